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

# ---- charts/locust: the Locust chart (tests/deploy/test_locust_chart*.py) ----------------------------
LOCUST_CHART_DIR := charts/locust
# What the official Locust image runs: the modules of loadtests/ less the capacity model's, which no
# pod runs. tests/deploy/locust_chart.py applies the same rule to check the copy.
LOCUST_RUNTIME_FILES = $(sort $(filter-out loadtests/capacity%,$(wildcard loadtests/*.py)))

.PHONY: chart-locust-files
chart-locust-files: ## Copy the runtime modules of loadtests/ into charts/locust/files/ (Helm reads no file outside a chart)
	rm -rf $(LOCUST_CHART_DIR)/files/loadtests
	mkdir -p $(LOCUST_CHART_DIR)/files/loadtests
	cp $(LOCUST_RUNTIME_FILES) $(LOCUST_CHART_DIR)/files/loadtests/

.PHONY: chart-locust-golden
chart-locust-golden: venv tools ## Write the Locust chart's golden renders anew (tests/deploy/golden/locust/)
	$(VENV)/bin/python -m tests.deploy.locust_golden

.PHONY: chart-locust-readme
chart-locust-readme: tools ## Regenerate the Locust chart README's parameter table from its @param comments
	$(README_GENERATOR) --values $(LOCUST_CHART_DIR)/values.yaml --readme $(LOCUST_CHART_DIR)/README.md
