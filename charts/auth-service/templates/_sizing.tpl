{{/*
Numbers derived from the values: the pod's hash workers, the most pods the release can run, the
connections they may open, the memory they need, the grace period. One definition each, used by the
objects and by the checks in _checks.tpl.
*/}}

{{/*
A CPU quantity ("1", 1, "1500m", "0.5") in millicores.
*/}}
{{- define "auth-service.millicores" -}}
{{- $q := toString . }}
{{- if hasSuffix "m" $q }}
{{- trimSuffix "m" $q | float64 | int64 }}
{{- else }}
{{- mulf (float64 $q) 1000 | int64 }}
{{- end }}
{{- end }}

{{/*
A memory quantity ("512Mi", "1Gi", "1G", "1e9", 536870912) in bytes.
*/}}
{{- define "auth-service.bytes" -}}
{{- $q := toString . }}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 }}
{{- $suffix := regexFind "(Ki|Mi|Gi|Ti|k|K|M|G|T)$" $q }}
{{- if $suffix }}
{{- mulf (float64 (trimSuffix $suffix $q)) (index $units $suffix) | int64 }}
{{- else }}
{{- float64 $q | int64 }}
{{- end }}
{{- end }}

{{/*
argon2 threads per pod: config.hashWorkers, else the CPU limit, else the CPU request, rounded up. The
service would read its cgroup's quota, but without a CPU limit there is none and it would count the
node's cores; the chart states the number instead.
*/}}
{{- define "auth-service.hashWorkers" -}}
{{- $cpu := "" }}
{{- with .Values.resources }}
{{- $cpu = coalesce (dig "limits" "cpu" "" .) (dig "requests" "cpu" "" .) }}
{{- end }}
{{- if gt (int .Values.config.hashWorkers) 0 }}
{{- .Values.config.hashWorkers }}
{{- else if $cpu }}
{{- max 1 (ceil (divf (include "auth-service.millicores" $cpu | float64) 1000)) | int }}
{{- else }}
{{- 1 }}
{{- end }}
{{- end }}

{{/*
The most replicas the release asks for: the HPA's maximum, else replicaCount.
*/}}
{{- define "auth-service.maxReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.maxReplicas }}{{ else }}{{ .Values.replicaCount }}{{ end }}
{{- end }}

{{/*
The extra pods of a rolling update at the most replicas: maxSurge as a count, or a share rounded up
(as the Deployment controller rounds it).
*/}}
{{- define "auth-service.surgePods" -}}
{{- $surge := toString .Values.maxSurge }}
{{- if hasSuffix "%" $surge }}
{{- ceil (divf (mulf (include "auth-service.maxReplicas" . | float64) (trimSuffix "%" $surge | float64)) 100) | int }}
{{- else }}
{{- $surge | int }}
{{- end }}
{{- end }}

{{/*
Connections one pod opens: both pools and the invalidation listener.
*/}}
{{- define "auth-service.connectionsPerPod" -}}
{{- add .Values.config.dbReadPoolSize .Values.config.dbPoolSize 1 }}
{{- end }}

{{/*
Memory one pod needs, in MiB: the measured baseline, the cache's bound, each hash worker's argon2
memory, and the request bodies still arriving. A worker verifies an imported hash at that hash's own
cost, so its memory is the larger of the service's argon2 memory and the import range's maximum.
*/}}
{{- define "auth-service.hashWorkerMemoryKiB" -}}
{{- max (int .Values.config.argon2MemoryKiB) (int .Values.config.argon2ImportMaxMemoryKiB) }}
{{- end }}

{{- define "auth-service.memoryNeededMiB" -}}
{{- $cache := divf .Values.config.cacheMaxBytes 1048576 }}
{{- $hashing := divf (mulf (include "auth-service.hashWorkers" . | float64) (include "auth-service.hashWorkerMemoryKiB" . | float64)) 1024 }}
{{- $bodies := divf .Values.config.httpMaxArrivingBodyBytes 1048576 }}
{{- addf .Values.memoryBaselineMiB $cache $hashing $bodies | ceil | int }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the drain, then the graceful timeout, then the margin for closing pools
and flushing spans. The kubelet kills the pod after it; nothing else sets these numbers.
*/}}
{{- define "auth-service.terminationGracePeriodSeconds" -}}
{{- addf .Values.config.drainDelaySeconds .Values.config.gracefulTimeoutSeconds .Values.terminationGraceMarginSeconds | ceil | int }}
{{- end }}
