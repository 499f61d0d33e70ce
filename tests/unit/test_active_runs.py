"""``StateReader.active_runs`` keeps the headers it decoded with their stored bytes and opens
again only those rewritten since: the leader's loops list every unfinished run on every
run's end, and a backlog made that a decrypt and decode per queued run each time. It must
still never be staler than the store, and what it hands out must not be its own copy."""

from __future__ import annotations

from kiok.dag.load import spec_from_yaml
from kiok.security.kms import Keyring
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.encrypted import EncryptedKV
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader

DAG = 'dag: {id: d}\ntasks:\n  - {id: a, type: shell, script: "true"}\n'


class CountingKV(EncryptedKV):
    """Counts the stored values it decrypts."""

    opened = 0

    def get(self, space: str, key: bytes) -> bytes | None:
        CountingKV.opened += 1
        return super().get(space, key)

    def open(self, space: str, key: bytes, sealed: bytes) -> bytes:
        CountingKV.opened += 1
        return super().open(space, key, sealed)


async def test_only_rewritten_headers_are_opened_again_and_every_change_is_seen() -> None:
    kv = CountingKV(MemoryKV(keys.SPACES), keys.ENCRYPTION_KEYS)
    kv.set_keyring(Keyring.generate())
    log, reader = LocalCommandLog(kv), StateReader(kv)
    await log.propose(c.RegisterDag(at_ms=1, spec=spec_from_yaml(DAG).to_dict()))
    runs = [(await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"] for _ in range(20)]

    assert [r["runId"] for r in reader.active_runs()] == runs
    CountingKV.opened = 0
    listed = reader.active_runs()
    assert CountingKV.opened == 0  # nothing rewritten: nothing opened
    listed[0]["state"] = "MANGLED"  # a copy: the caller's to change
    assert reader.active_runs()[0]["state"] == "PENDING"

    await log.propose(c.AssignRun(at_ms=3, run_id=runs[3], worker="w1", term=1))
    await log.propose(c.CancelRun(at_ms=4, run_id=runs[5]))
    CountingKV.opened = 0
    listed = reader.active_runs()
    assert CountingKV.opened == 1  # the assigned run's new header; the cancelled one is gone
    assert [r["runId"] for r in listed] == runs[:5] + runs[6:]
    assert (listed[3]["state"], listed[3]["worker"]) == ("RUNNING", "w1")
    assert listed[3] == reader.run_header(runs[3])
