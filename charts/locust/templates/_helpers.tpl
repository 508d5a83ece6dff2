{{/*
The chart's name, or nameOverride; 63 characters at most (a DNS label).
*/}}
{{- define "locust.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: the release's name alone when it already holds the chart's.
*/}}
{{- define "locust.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A component's name: the full name and a suffix, still within 63 characters. (list $ "master")
*/}}
{{- define "locust.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "locust.fullname" $root | trunc (int (sub 62 (len (index . 1))))) (index . 1) | trimSuffix "-" }}
{{- end }}

{{/*
The chart label: name and version.
*/}}
{{- define "locust.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "locust.labels" -}}
helm.sh/chart: {{ include "locust.chart" . }}
{{ include "locust.selectorLabels" . }}
app.kubernetes.io/version: {{ include "locust.version" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: auth-service
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels that select the release's pods; a component label (master, worker) tells them apart.
*/}}
{{- define "locust.selectorLabels" -}}
app.kubernetes.io/name: {{ include "locust.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels of one component: (list $ "master").
*/}}
{{- define "locust.componentSelectorLabels" -}}
{{ include "locust.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
Labels of one component's objects: (list $ "master").
*/}}
{{- define "locust.componentLabels" -}}
{{ include "locust.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
The ServiceAccount of the pods (they call no Kubernetes API; its token is never mounted).
*/}}
{{- define "locust.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "locust.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Locust's version: the image tag, else the chart's appVersion.
*/}}
{{- define "locust.version" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
The image reference: repository:tag, and @digest when one is given.
*/}}
{{- define "locust.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "locust.version" .) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
The master's Service, which the workers connect to (the Deployment's in ui mode, the Job's in headless).
*/}}
{{- define "locust.masterService" -}}
{{- include "locust.componentName" (list . "master") }}
{{- end }}

{{/*
The pod securityContext of every pod: a numeric non-root user (the image's USER is the name `locust`,
which the kubelet cannot check against runAsNonRoot), whose group owns the reports' volume.
*/}}
{{- define "locust.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The container securityContext of every container: read-only root, no capabilities.
*/}}
{{- define "locust.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
{{- end }}

{{/*
The pod-level fields every pod shares: its account without a token, pull secrets, the security context.
*/}}
{{- define "locust.podCommon" -}}
serviceAccountName: {{ include "locust.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
securityContext:
  {{- include "locust.podSecurityContext" . | nindent 2 }}
{{- end }}

{{/*
Scheduling of one component's pods: (list $ .Values.master).
*/}}
{{- define "locust.scheduling" -}}
{{- $c := index . 1 }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}
