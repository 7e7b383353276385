"""streamer: scores log events from Kafka with machine learning, at least once."""

__version__ = "0.1.0"
