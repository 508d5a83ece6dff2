{{/*
What the schema cannot say: rules across values and about the chart's own files. Each fails the render
with the reason and the fix. Included once, by the ConfigMap.
*/}}
{{- define "locust.checks" -}}
{{- if not (.Files.Get "files/loadtests/locustfile.py") }}
{{- fail "files/loadtests/locustfile.py is missing from the chart: run `make chart-locust-files`, which copies the runtime modules of loadtests/ into charts/locust/files/loadtests/" }}
{{- end }}
{{- if not .Values.target.batchToken.existingSecret }}
{{- fail "target.batchToken.existingSecret: the master seeds its test users through POST /v1/users:batch; name the Secret holding its bearer token (the service chart's own is <release>-auth-service, key batch-token)" }}
{{- end }}
{{- $a := .Values.workers.autoscaling }}
{{- if and (eq .Values.mode "headless") $a.enabled }}
{{- fail "workers.autoscaling.enabled: a headless run waits for workers.replicas workers (--expect-workers) and is sized before it starts; an HPA would change the load generator during the measurement. Turn it off and set workers.replicas" }}
{{- end }}
{{- if and (eq .Values.mode "headless") (eq .Values.scenario.shape "none") (not .Values.headless.runTime) }}
{{- fail "headless.runTime: with scenario.shape none no shape ends the run; set headless.runTime (and the users, e.g. scenario.env.LOCUST_USERS and LOCUST_SPAWN_RATE)" }}
{{- end }}
{{- $own := dict "LOADTEST_SHAPE" "scenario.shape" "LOADTEST_RATE" "scenario.targetRps" "LOADTEST_DURATION" "scenario.durationSeconds" "LOADTEST_MIX" "scenario.mix" "LOADTEST_BATCH_TOKEN" "target.batchToken" "LOCUST_HOST" "target.host" "LOCUST_LOCUSTFILE" "the chart's ConfigMap" }}
{{- range $name, $_ := .Values.scenario.env }}
{{- if hasKey $own $name }}
{{- fail (printf "scenario.env.%s: the chart sets %s from %s; set that instead" $name $name (get $own $name)) }}
{{- end }}
{{- end }}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) }}
{{- fail (printf "workers.autoscaling: minReplicas %d is above maxReplicas %d" (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- end }}
{{- end }}
