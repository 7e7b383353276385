"""The README's snippets for the shippers Debian lacks parse, and set exactly what the payloads of
test_documented_payloads.py assume (the record shape follows from these settings, and from the defaults they leave
alone). rsyslog's and syslog-ng's snippets are run for real by test_rsyslog.py and test_syslog_ng.py."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.shippers.support import ROOT, readme_snippet

BROKER, TOPIC, FILE = "127.0.0.1:9092", "logs.raw", "/var/log/checkout/app.log"


def test_vector_file_source_to_kafka_json():
    conf = tomllib.loads(readme_snippet("[sources.app]"))
    source, sink = conf["sources"]["app"], conf["sinks"]["streamer"]
    assert (source["type"], source["include"]) == ("file", [FILE])
    assert (sink["type"], sink["inputs"], sink["bootstrap_servers"], sink["topic"]) == ("kafka", ["app"], BROKER, TOPIC)
    assert sink["encoding"] == {"codec": "json"}  # the event as JSON: file, host, message, source_type, timestamp


def _fluent_bit_sections(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        if m := re.fullmatch(r"\[(\w+)\]", line.strip()):
            current = sections.setdefault(m[1], {})
        elif line.strip():
            key, value = line.split(None, 1)
            current[key.lower()] = value.strip()
    return sections


def test_fluent_bit_tail_to_kafka_defaults():
    sections = _fluent_bit_sections(readme_snippet("[INPUT]"))
    assert sections["INPUT"] == {"name": "tail", "path": FILE}  # no parser: the line goes under `log`
    out = sections["OUTPUT"]
    assert (out["name"], out["brokers"], out["topics"]) == ("kafka", BROKER, TOPIC)
    # The defaults the payload assumes: format json, timestamp_key @timestamp, timestamp_format double.
    assert not {"format", "timestamp_key", "timestamp_format"} & set(out)


def test_filebeat_filestream_to_kafka_default_codec():
    conf = yaml.safe_load(readme_snippet("filebeat.inputs:"))
    (inp,) = conf["filebeat.inputs"]
    assert (inp["type"], inp["paths"]) == ("filestream", [FILE])
    out = conf["output.kafka"]
    assert (out["hosts"], out["topic"]) == ([BROKER], TOPIC)
    assert "codec" not in out  # without a codec section, events are JSON-encoded


def test_logstash_kafka_output_json_codec():
    text = readme_snippet('input  { file { path => "/var/log/checkout/app.log" } }')
    out = re.search(r"kafka \{(.*)\}", text)
    assert out, text
    settings = dict(re.findall(r'(\w+) => ("[^"]*"|\w+)', out[1]))
    assert settings == {"bootstrap_servers": f'"{BROKER}"', "topic_id": f'"{TOPIC}"', "codec": "json"}


def test_otel_collector_filelog_and_otlp_to_kafka_otlp_proto():
    conf = yaml.safe_load(readme_snippet("receivers:"))
    assert conf["receivers"]["filelog"] == {"include": [FILE]}  # no operators: the line is the body
    kafka = conf["exporters"]["kafka"]
    assert (kafka["brokers"], kafka["topic"]) == ([BROKER], TOPIC)
    assert "encoding" not in kafka  # default otlp_proto
    logs = conf["service"]["pipelines"]["logs"]
    assert set(logs["receivers"]) == {"otlp", "filelog"} and logs["exporters"] == ["kafka"]
    assert conf["processors"]["resourcedetection"] == {"detectors": ["system"]}  # host.name on the resource
    assert set(logs["processors"]) <= set(conf["processors"])


def test_fluentd_out_kafka2_json_with_injected_host_and_time():
    text = readme_snippet("<match app.**>", doc=ROOT / "docs" / "shippers.md")
    assert re.search(r"@type kafka2\n", text) and f"brokers {BROKER}\n" in text and f"default_topic {TOPIC}\n" in text
    assert re.search(r"<format>\s+@type json\s+</format>", text)
    # The payload's `hostname` and `time` (time_type float, the default) come from this inject section.
    assert re.search(r"<inject>\s+hostname_key hostname\s+time_key time\s+</inject>", text)
