# The two commands a newcomer needs (see README):
#   make demo   renders a synthetic subject, edits its pulse, verifies it -> demo_output/
#   make test   runs the test suite on CPU
.PHONY: env demo test

env:
	./scripts/dev_env.sh

demo: env
	.venv/bin/python -m physiolatent_core demo --out demo_output --overwrite

test: env
	.venv/bin/python -m pytest
