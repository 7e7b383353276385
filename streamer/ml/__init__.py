"""Machine learning for streamer: one shared vectorizer, a level classifier and an anomaly detector.

corpus     built-in labelled training corpus (seeded generator)
features   masking + the shared TF-IDF vectorizer
models     the level and anomaly models
train      train() / train_corpus() / save()
artifacts  model directories: save, verify (sha256, versions), load
scorer     Scorer / ScoreColumns: batch scoring for the pipeline
severity   severity rule
data       reading labelled JSON-lines / CSV files
report     human-readable metadata/metric summaries; cliargs: flags shared by the ML commands
"""
