"""Pure formatting of the cluster, workers, connections and IAM commands, and the worker
status address."""

from __future__ import annotations

import click
import pytest

from kiok.cli.cluster import render_cluster
from kiok.cli.connections import render_connection
from kiok.cli.iam import names, policy_summary
from kiok.cli.workers import describe_drain, status_url
from tests.unit.test_cli_harness import NOW

CLUSTER = {
    "masters": [
        {"id": "m1", "role": "leader", "address": "10.0.0.1:8080", "ready": True},
        {"id": "m22", "role": "follower", "address": None, "ready": False},
    ],
    "leader": "m1",
    "term": 4,
    "workers": [
        {
            "id": "worker-a",
            "address": "10.0.0.9:19998",
            "labels": ["gpu", "eu"],
            "slots": 8,
            "free": 5,
            "connected": True,
            "draining": False,
            "lastHeartbeat": "2024-05-01T11:59:57Z",
        },
        {"id": "w2", "address": "x", "labels": [], "slots": 2, "free": 2, "draining": True},
    ],
}


def test_render_cluster_aligns_masters_and_workers() -> None:
    assert render_cluster(CLUSTER, NOW).splitlines() == [
        "leader:  m1 (term 4)",
        "",
        "MASTER  ROLE      ADDRESS        READY",
        "m1      leader    10.0.0.1:8080  yes",
        "m22     follower  -              no",
        "",
        "WORKER    ADDRESS         LABELS  SLOTS  BUSY  FREE  DRAINING  CONNECTED  HEARTBEAT",
        "worker-a  10.0.0.9:19998  gpu,eu  8      3     5     no        yes        3s ago",
        "w2        x               -       2      0     2     yes       -          -",
    ]


def test_render_cluster_without_workers() -> None:
    out = render_cluster({"masters": [], "leader": None, "term": 0, "workers": []}, NOW)
    assert out.splitlines() == ["leader:  - (term 0)", "", "no masters", "", "no workers connected"]


@pytest.mark.parametrize(
    ("given", "master", "url"),
    [
        ("w1", "http://m:8080", "http://w1:19998"),
        ("w1:2000", "http://m:8080", "http://w1:2000"),
        ("[::1]", "https://m:8443", "https://[::1]:19998"),
        ("http://10.0.0.9:7/", "https://m", "http://10.0.0.9:7"),
    ],
)
def test_status_url(given: str, master: str, url: str) -> None:
    assert status_url(given, master) == url


@pytest.mark.parametrize("bad", ["ftp://w", "w:port", "http://"])
def test_status_url_refuses(bad: str) -> None:
    with pytest.raises(click.BadParameter):
        status_url(bad, "http://m")


def test_describe_drain() -> None:
    url = "http://w:19998"
    assert describe_drain(url, {"draining": True, "activeRuns": 1}) == (
        "worker at http://w:19998 is draining (1 run active; they carry on to their end)"
    )
    assert describe_drain(url, {"draining": False, "activeRuns": 0}) == (
        "worker at http://w:19998 takes runs again (0 runs active)"
    )


def test_policy_summary_and_names() -> None:
    doc = {
        "Statement": [
            {"Effect": "Allow", "Action": ["dags:*", "runs:Read"], "Resource": ["dag/etl", "dag/etl/*"]},
            {"Effect": "Deny", "Action": "dags:Delete", "Resource": "dag/etl"},
        ]
    }
    assert policy_summary(doc) == ["Allow,Deny", "dags:*,runs:Read,dags:Delete", "dag/etl,dag/etl/*"]
    assert policy_summary(None) == ["-", "-", "-"]
    assert names("a, b,,c ") == ["a", "b", "c"]
    assert names("") == []
    assert names(None) is None


def test_render_connection_masks_nothing_it_was_not_given() -> None:
    doc = {
        "connectionId": "pg",
        "type": "postgres",
        "description": "",
        "properties": {"host": "***", "password": "***"},
        "createdAt": "2024-05-01T00:00:00.000Z",
        "updatedAt": "2024-05-01T00:00:01.000Z",
    }
    assert render_connection(doc).splitlines() == [
        "connection:  pg",
        "type:        postgres",
        "description: -",
        "created:     2024-05-01T00:00:00.000Z",
        "updated:     2024-05-01T00:00:01.000Z",
        "",
        "properties:",
        "  host: ***",
        "  password: ***",
    ]
