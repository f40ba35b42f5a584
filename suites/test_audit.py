"""Audit gates (seeds 002/003): G6 audit completeness, integrity of the adapter, data and config against their
recorded sha256, the adapter's format, and (opt-in) reproducibility of the training from its record."""

from pathlib import Path

import pytest

from pytest_ftgate.gates import audit
from pytest_ftgate.record import require_record, training_config


@pytest.mark.gate("G6", name="audit", severity="block")
def test_the_audit_record_documents_inputs_training_outputs_and_environment(ft_run, gate, audit_record,
                                                                            ftgate_config):
    check = audit.completeness(audit_record, ft_run.run_id)  # an adopted run: audit.adopted (warn | block)
    gate.check(check, severity=audit.adopted_severity(check, ftgate_config.audit.adopted))


@pytest.mark.gate("integrity", name="integrity", severity="block")
def test_adapter_data_and_config_match_their_recorded_hashes(ft_run, gate, audit_record, adapter_artifact_dir,
                                                             ftgate_session, ftgate_config):
    record = require_record(audit_record)
    check = audit.integrity(record, adapter_artifact_dir, ft_run.params, Path(ftgate_session.options.root),
                            base_model=ftgate_config.audit.verify_base_model)
    gate.check(audit.require_verifiable(check))  # data that is gone: an error, not a pass


@pytest.mark.gate("adapter_format", name="adapter_format", severity="block")
def test_the_adapter_is_safetensors_and_needs_no_remote_code(gate, audit_record, adapter_artifact_dir,
                                                            ftgate_config, ftgate_session):
    record = audit_record.record or {}
    base = ((record.get("input_artifacts") or {}).get("base_model") or {}).get("path")
    gate.check(audit.adapter_format(
        adapter_artifact_dir,
        allow_pickle=ftgate_session.options.allow_pickle or ftgate_config.audit.allow_pickle,
        allow_remote_code=ftgate_config.audit.trust_remote_code,
        training_config=training_config(record, Path(ftgate_session.options.root)),
        base_model_dir=Path(base) if base else None,
    ))


@pytest.mark.slow
@pytest.mark.gate("reproducibility", name="reproducibility", severity="block")
def test_retraining_from_the_record_reproduces_the_loss(ft_run, gate, audit_record, ftgate_config, ftgate_session,
                                                        tmp_path):
    steps = ftgate_config.audit.reproducibility_steps
    if steps <= 0:
        pytest.skip("opt-in: set audit.reproducibility_steps in ftgate.yaml to re-train that many steps and compare")
    from pytest_ftgate import replay

    record = require_record(audit_record)
    inputs = audit.reproducible_inputs(record, Path(ftgate_session.options.root))
    if not inputs.passed:  # other inputs cannot reproduce the run: say why instead of training
        gate.check(inputs)
    losses = replay.replay_losses(record, steps, tmp_path)
    gate.check(audit.compare_losses(ft_run.history.get("loss", []), losses, steps,
                                    ftgate_config.audit.reproducibility_rtol))
