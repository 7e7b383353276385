"""Exit 0 once a Kafka broker at BOOTSTRAP answers a metadata request, 1 after TIMEOUT seconds.

Usage: ready.py BOOTSTRAP TIMEOUT [--quiet]. Used by scripts/kafka.sh to wait for the broker it started and to
tell a healthy broker already on the port from some other program holding it.
"""

import sys
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient


def main() -> int:
    bootstrap, timeout = sys.argv[1], float(sys.argv[2])
    # log_level 0: a port that is not Kafka makes librdkafka log errors we don't want on the terminal.
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "socket.connection.setup.timeout.ms": 2000})
    deadline = time.monotonic() + timeout
    while True:
        try:
            md = admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            if md.brokers:
                return 0
        except KafkaException:
            pass
        if time.monotonic() >= deadline:
            return 1
        time.sleep(0.3)


if __name__ == "__main__":
    sys.exit(main())
