##@ Kubernetes (charts/, k8s/, Tiltfile)

CHART_DIR := charts/auth-service

.PHONY: chart-test
chart-test: venv tools ## The chart, manifest and Tiltfile checks alone (lint, schemas, policy, goldens, runs)
	$(VENV)/bin/pytest tests/deploy

.PHONY: chart-golden
chart-golden: venv tools ## Write the golden renders anew (tests/deploy/golden/), to review and commit
	$(VENV)/bin/python -m tests.deploy.golden

.PHONY: chart-readme
chart-readme: tools ## Regenerate the chart README's parameter table from the @param comments of values.yaml
	$(README_GENERATOR) --values $(CHART_DIR)/values.yaml --readme $(CHART_DIR)/README.md
