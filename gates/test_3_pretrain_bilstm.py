"""Gate 3: the masked-autoencoder encoder carries class signal a linear probe can read."""

import pytest

from moola.stages.encoder import encoder_record
from moola.stages.rules import probe_failures


@pytest.mark.dependency(name="gate3", depends=["gate2"], scope="session")
def test_pretrained_encoder_passes_linear_probe(run, pretrained, gate_record):
    # The numbers were computed when the encoder was obtained (the shared fixture, first used by
    # gate 1), so a run that `-x` stops before this gate still records them in this gate's line.
    record = pretrained.record or encoder_record(run, pretrained)  # empty: it raised in the fixture; raise here
    for name, value in record.items():
        setattr(gate_record, name, value)
    failures = probe_failures(record["metrics"], run.profile.thresholds)
    if failures:  # the rule's message alone: no traceback of the fixtures' objects
        pytest.fail("; ".join(failures), pytrace=False)
