{{/*
A secretKeyRef env entry: (list "NAME" "secret" "key").
*/}}
{{- define "auth-service.secretEnv" -}}
- name: {{ index . 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ index . 1 }}
      key: {{ index . 2 }}
{{- end }}

{{/*
The environment and the database's DSN: all the migration Job and the schema wait get (least
privilege). AUTH_ENVIRONMENT is a variable, not a setting of the file: the image sets it (production),
and a variable outranks the file.
*/}}
{{- define "auth-service.databaseEnv" -}}
- name: AUTH_ENVIRONMENT
  value: {{ .Values.environment }}
{{ include "auth-service.secretEnv" (list "AUTH_DATABASE_URL" (include "auth-service.databaseSecret" .) (include "auth-service.databaseSecretKey" .)) }}
{{- end }}

{{/*
The server's environment: where its settings file is, where it listens, its secrets, and the standard
OpenTelemetry variables, which name the pod from its labels and the downward API.
*/}}
{{- define "auth-service.serverEnv" -}}
{{- $generated := include "auth-service.generatedSecretName" . -}}
- name: AUTH_CONFIG_FILE
  value: /etc/auth-service/config.yaml
- name: AUTH_HOST
  value: 0.0.0.0
- name: AUTH_PORT
  value: {{ .Values.containerPorts.http | quote }}
# Beyond loopback the admin server asks AUTH_ADMIN_TOKEN of its profiling endpoints; /metrics stays open
# to the scraper, and the NetworkPolicy lets only the monitoring namespace reach the port.
- name: AUTH_ADMIN_HOST
  value: 0.0.0.0
- name: AUTH_ADMIN_PORT
  value: {{ .Values.containerPorts.admin | quote }}
{{ include "auth-service.databaseEnv" . }}
{{- with .Values.database.external.listenerExistingSecret }}
{{ include "auth-service.secretEnv" (list "AUTH_DATABASE_LISTENER_URL" . $.Values.database.external.listenerExistingSecretKey) }}
{{- end }}
{{ include "auth-service.secretEnv" (list "AUTH_TOKEN_KEYS" (default $generated .Values.tokenKeys.existingSecret) .Values.tokenKeys.existingSecretKey) }}
{{ include "auth-service.secretEnv" (list "AUTH_BATCH_TOKEN" (default $generated .Values.batchToken.existingSecret) .Values.batchToken.existingSecretKey) }}
{{ include "auth-service.secretEnv" (list "AUTH_ADMIN_TOKEN" (default $generated .Values.adminToken.existingSecret) .Values.adminToken.existingSecretKey) }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_POD_UID
  valueFrom:
    fieldRef:
      fieldPath: metadata.uid
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_SERVICE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['app.kubernetes.io/name']
- name: SERVICE_VERSION
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['app.kubernetes.io/version']
- name: OTEL_RESOURCE_ATTRIBUTES
  value: service.version=$(SERVICE_VERSION),service.instance.id=$(K8S_POD_UID),k8s.pod.name=$(K8S_POD_NAME),k8s.pod.uid=$(K8S_POD_UID),k8s.namespace.name=$(K8S_NAMESPACE_NAME),k8s.node.name=$(K8S_NODE_NAME),k8s.deployment.name={{ include "auth-service.fullname" . }}
{{- if include "auth-service.tracingOn" . }}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ include "auth-service.otlpEndpoint" . | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .Values.tracing.protocol }}
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .Values.tracing.samplerRatio | quote }}
{{- else }}
- name: OTEL_TRACES_EXPORTER
  value: none
{{- end }}
{{- if .Values.liveCode.enabled }}
- name: PYTHONPATH
  value: /live
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Container resources without the empty entries (an unset CPU limit is "" in the values).
*/}}
{{- define "auth-service.resources" -}}
{{- $out := dict }}
{{- range $kind, $amounts := . }}
{{- $kept := dict }}
{{- range $name, $amount := $amounts }}
{{- if $amount }}
{{- $_ := set $kept $name $amount }}
{{- end }}
{{- end }}
{{- if $kept }}
{{- $_ := set $out $kind $kept }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}
