"""How options and ini keys resolve (pytester.parseconfigure), and how bad values are refused."""

import subprocess
import sys
import textwrap

import pytest

from pytest_ftgate.plugin import SESSION_KEY


def options(config):
    return config.stash[SESSION_KEY].options


def test_run_ids_repeat_and_keep_their_order(pytester):
    config = pytester.parseconfigure("--run-id", "abc", "--run-id", "def")
    assert options(config).run_ids == ("abc", "def")


def test_defaults_are_the_embedded_store_and_ftgate_results(pytester, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = pytester.parseconfigure()
    sess = config.stash[SESSION_KEY]
    assert sess.options.out == "ftgate-results"
    assert sess.tracking_uri == f"sqlite:///{pytester.path / '.ftgate' / 'mlflow.db'}"


def test_the_tracking_uri_defaults_to_the_environment(pytester, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert pytester.parseconfigure().stash[SESSION_KEY].tracking_uri == "http://127.0.0.1:5999"


@pytest.mark.slow
def test_ini_keys_set_every_option_and_the_command_line_wins(pytester):
    pytester.makeini(textwrap.dedent("""
        [pytest]
        ftgate_run_ids = r1 r2
        ftgate_tracking_uri = sqlite:///x.db
        ftgate_experiment = exp
        ftgate_out = results
        ftgate_retrain = true
    """))
    opts = options(pytester.parseconfigure())
    assert (opts.run_ids, opts.tracking_uri, opts.experiment, opts.out, opts.retrain) == (
        ("r1", "r2"), "sqlite:///x.db", "exp", "results", True)
    assert options(pytester.parseconfigure("--ftgate-out", "other")).out == "other"


@pytest.mark.parametrize("args, quoted", [
    (["--ftgate-tracking-uri", "not a uri"], "'not a uri' is not a tracking URI"),
    (["--ftgate-config", "missing.yaml"], "'missing.yaml' does not exist"),
    (["--run-id", "has space"], "'has space' is not a run id"),
    (["--ftgate-engine", "tgi"], "'tgi' is not an engine"),
])
def test_a_bad_option_value_is_a_usage_error_quoting_it(pytester, args, quoted):
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{quoted}*"])


def test_a_bad_ini_value_is_a_usage_error_naming_the_key(pytester):
    pytester.makeini("[pytest]\nftgate_tracking_uri = nonsense\n")
    with pytest.raises(pytest.UsageError, match="ini key ftgate_tracking_uri: 'nonsense'"):
        pytester.parseconfigure()


def test_an_unknown_config_key_is_rejected_naming_the_file_and_the_key(pytester):
    cfg = pytester.makefile(".yaml", ftgate="training:\n  max_grad_nrom: 5\n")
    result = pytester.runpytest("--ftgate-config", str(cfg))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ftgate.yaml: unknown key 'training.max_grad_nrom'; did you mean 'max_grad_norm'?*"])


def test_a_config_value_of_the_wrong_type_is_rejected(pytester):
    cfg = pytester.makefile(".yaml", ftgate="training:\n  max_grad_norm: lots\n")
    result = pytester.runpytest("--ftgate-config", str(cfg))
    result.stderr.fnmatch_lines(["*training.max_grad_norm must be a number, got 'lots'*"])


def test_thresholds_from_the_config_file_reach_the_session(pytester):
    cfg = pytester.makefile(".yaml", ftgate="training:\n  max_grad_norm: 5\ngates:\n  G2: block\n")
    sess = pytester.parseconfigure("--ftgate-config", str(cfg)).stash[SESSION_KEY]
    assert sess.cfg.training.max_grad_norm == 5.0 and sess.cfg.severity("G2", "warn") == "block"


def test_an_ftgate_yaml_in_the_rootdir_is_read_by_default(pytester):
    pytester.makeini("[pytest]\n")
    pytester.makefile(".yaml", ftgate="resources:\n  max_training_time_hours: 2\n")
    assert pytester.parseconfigure().stash[SESSION_KEY].cfg.resources.max_training_time_hours == 2.0


def test_every_option_has_a_metavar_and_shows_its_default_in_help(pytester):
    result = pytester.runpytest("--help")
    out = result.stdout.str()
    for flag in ("--run-id=ID", "--ftgate-tracking-uri=URI", "--ftgate-experiment=NAME", "--ftgate-config=PATH",
                 "--ftgate-out=DIR", "--ftgate-train=CONFIG"):
        assert flag in out
    assert out.count("(default:") >= 11


def test_pytest_help_imports_neither_mlflow_nor_torch(tmp_path):
    code = ("import sys, pytest, io, contextlib\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    pytest.main(['--help', '-p', 'no:cacheprovider'])\n"
            "print(sorted(m for m in ('mlflow', 'torch', 'transformers', 'vllm', 'lm_eval') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout  # outside this repo: its test conftest preloads torch on purpose
    assert out.strip().splitlines()[-1] == "[]"
