##@ Reliability (reliability/)

# e.g. RELIABILITY_ARGS="--scenarios rolling,database" or "--quick" (the test suite's short versions)
RELIABILITY_ARGS ?=

.PHONY: reliability
reliability: venv ## The scenarios' long versions, 127.0.0.1 only, minutes (writes reliability/results/)
	$(VENV)/bin/python -m reliability $(RELIABILITY_ARGS)
