{{/*
The Locust scenarios: the runtime modules of loadtests/, copied into files/loadtests/ by
`make chart-locust-files` (Helm reads no file outside the chart). One ConfigMap key per module,
mounted as the package `loadtests` under codeRoot, which is on PYTHONPATH.
*/}}
{{- define "locust.codeRoot" -}}/opt/loadtests{{- end }}
{{- define "locust.packageDir" -}}{{ include "locust.codeRoot" . }}/loadtests{{- end }}
{{- define "locust.locustfile" -}}{{ include "locust.packageDir" . }}/locustfile.py{{- end }}

{{/*
The ConfigMap's data: each module under its file name.
*/}}
{{- define "locust.filesData" -}}
{{- (.Files.Glob "files/loadtests/*.py").AsConfig }}
{{- end }}

{{/*
The checksum on every pod: a changed module rolls the master and the workers together, so that
they never run two versions of a scenario.
*/}}
{{- define "locust.filesChecksum" -}}
{{- include "locust.filesData" . | sha256sum }}
{{- end }}
