{{/*
The master's ports: the web UI, and the one the workers connect to (Locust's defaults).
*/}}
{{- define "locust.uiPort" -}}8089{{- end }}
{{- define "locust.masterPort" -}}5557{{- end }}

{{/*
The environment of every Locust container: the scenarios' package on PYTHONPATH, the locustfile, the
target, the scenario's settings. (list $ "master") adds what only the master reads: the batch token it
seeds the test users with.
*/}}
{{- define "locust.env" -}}
{{- $root := index . 0 }}
{{- $role := index . 1 -}}
- name: PYTHONPATH
  value: {{ include "locust.codeRoot" $root }}
# The ConfigMap is read-only: no bytecode cache to write.
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: LOCUST_LOCUSTFILE
  value: {{ include "locust.locustfile" $root }}
- name: LOCUST_HOST
  value: {{ $root.Values.target.host | quote }}
{{- include "locust.scenarioEnv" $root }}
{{- if eq $role "master" }}
- name: LOADTEST_BATCH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.target.batchToken.existingSecret }}
      key: {{ $root.Values.target.batchToken.existingSecretKey }}
{{- end }}
{{- range $name, $value := $root.Values.scenario.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
The scenario's typed settings, as LOADTEST_* variables.
*/}}
{{- define "locust.scenarioEnv" -}}
{{- $s := .Values.scenario }}
- name: LOADTEST_SHAPE
  value: {{ $s.shape | quote }}
- name: LOADTEST_RATE
  value: {{ $s.targetRps | toString | quote }}
- name: LOADTEST_DURATION
  value: {{ $s.durationSeconds | toString | quote }}
{{- with $s.mix }}
- name: LOADTEST_MIX
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
The volumes every Locust container mounts: the scenarios, /tmp; the master also its reports' folder.
*/}}
{{- define "locust.volumeMounts" -}}
{{- $root := index . 0 -}}
- name: loadtests
  mountPath: {{ include "locust.packageDir" $root }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if eq (index . 1) "master" }}
- name: results
  mountPath: {{ $root.Values.results.mountPath }}
{{- end }}
{{- end }}

{{- define "locust.volumes" -}}
{{- $root := index . 0 -}}
- name: loadtests
  configMap:
    name: {{ include "locust.fullname" $root }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if eq (index . 1) "master" }}
- name: results
  {{- if $root.Values.results.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "locust.componentName" (list $root "results") }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ $root.Values.results.sizeLimit }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
The pod template's metadata of a component: its labels, and the scenarios' checksum.
*/}}
{{- define "locust.podMetadata" -}}
{{- $root := index . 0 -}}
labels:
  {{- include "locust.componentLabels" (list $root (index . 1)) | nindent 2 }}
annotations:
  checksum/loadtests: {{ include "locust.filesChecksum" $root }}
{{- end }}

{{/*
The worker's pod spec, for the Deployment (ui mode) and the Job (headless): (list $ "Always").
*/}}
{{- define "locust.workerPodSpec" -}}
{{- $root := index . 0 }}
{{- $w := $root.Values.workers -}}
{{- include "locust.podCommon" $root }}
restartPolicy: {{ index . 1 }}
terminationGracePeriodSeconds: {{ $w.terminationGracePeriodSeconds }}
{{- include "locust.scheduling" (list $root $w) }}
{{- if $w.topologySpread.enabled }}
topologySpreadConstraints:
  {{- range $w.topologySpread.topologyKeys }}
  - topologyKey: {{ . }}
    maxSkew: {{ $w.topologySpread.maxSkew }}
    whenUnsatisfiable: {{ $w.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "locust.componentSelectorLabels" (list $root "worker") | nindent 8 }}
  {{- end }}
{{- end }}
{{- if and $w.avoidTargetNodes $root.Values.target.podLabels }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- toYaml $root.Values.target.podLabels | nindent 14 }}
          namespaces:
            - {{ default $root.Release.Namespace $root.Values.target.namespace }}
{{- end }}
containers:
  - name: worker
    image: {{ include "locust.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args:
      - --worker
      - --master-host={{ include "locust.masterService" $root }}
      - --master-port={{ include "locust.masterPort" $root }}
      {{- range $w.extraArgs }}
      - {{ . | quote }}
      {{- end }}
    env:
      {{- include "locust.env" (list $root "worker") | nindent 6 }}
    securityContext:
      {{- include "locust.containerSecurityContext" $root | nindent 6 }}
    resources:
      {{- toYaml $w.resources | nindent 6 }}
    volumeMounts:
      {{- include "locust.volumeMounts" (list $root "worker") | nindent 6 }}
volumes:
  {{- include "locust.volumes" (list $root "worker") | nindent 2 }}
{{- end }}
