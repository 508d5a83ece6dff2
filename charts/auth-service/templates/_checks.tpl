{{/*
What the schema cannot say: rules across values. Each fails the render with the numbers and the fix,
before anything reaches the cluster. Included once, by the Deployment.
*/}}
{{- define "auth-service.checks" -}}
{{- include "auth-service.checkDatabase" . }}
{{- include "auth-service.checkConnectionBudget" . }}
{{- include "auth-service.checkMemory" . }}
{{- include "auth-service.checkReadinessWithinDrain" . }}
{{- include "auth-service.checkProduction" . }}
{{- include "auth-service.checkTokenKeys" . }}
{{- include "auth-service.checkAlertsHaveTheirScrape" . }}
{{- include "auth-service.checkImportRange" . }}
{{- end }}

{{- define "auth-service.checkDatabase" -}}
{{- if and (not .Values.postgresql.enabled) (not .Values.database.external.existingSecret) }}
{{- fail "database: set database.external.existingSecret to a Secret holding the DSN under the key database.external.existingSecretKey (\"dsn\": postgresql://user:password@host:5432/db), or postgresql.enabled=true for a development database" }}
{{- end }}
{{- if and .Values.postgresql.enabled .Values.database.external.existingSecret }}
{{- fail "database: postgresql.enabled and database.external.existingSecret both name a database; keep one" }}
{{- end }}
{{- end }}

{{- define "auth-service.checkConnectionBudget" -}}
{{- $perPod := include "auth-service.connectionsPerPod" . | int }}
{{- $replicas := include "auth-service.maxReplicas" . | int }}
{{- $surge := include "auth-service.surgePods" . | int }}
{{- $migration := ternary 1 0 .Values.migrations.job.enabled }}
{{- $needed := add (mul $perPod (add $replicas $surge)) $migration }}
{{- $budget := sub .Values.database.maxConnections .Values.database.reservedConnections }}
{{- if gt $needed $budget }}
{{- fail (printf "database connections: %d per pod (config.dbReadPoolSize %d + config.dbPoolSize %d + 1 listener) x %d pods at most (%d replicas + %d surging in a rollout) + %d migration = %d, over database.maxConnections %d - database.reservedConnections %d = %d. Lower the pools or the replicas, raise max_connections, or put PgBouncer in front of the pools (README: PgBouncer)" $perPod (int .Values.config.dbReadPoolSize) (int .Values.config.dbPoolSize) (add $replicas $surge) $replicas $surge $migration $needed (int .Values.database.maxConnections) (int .Values.database.reservedConnections) $budget) }}
{{- end }}
{{- end }}

{{- define "auth-service.checkMemory" -}}
{{- $limit := coalesce (dig "limits" "memory" "" .Values.resources) (dig "requests" "memory" "" .Values.resources) }}
{{- if not $limit }}
{{- fail "resources: set resources.limits.memory (or at least resources.requests.memory); the memory check needs it" }}
{{- end }}
{{- $limitMiB := divf (include "auth-service.bytes" $limit | float64) 1048576 | floor | int }}
{{- $needed := include "auth-service.memoryNeededMiB" . | int }}
{{- if lt $limitMiB $needed }}
{{- fail (printf "memory: the pod's memory (%s = %d MiB) is below what it needs: %d MiB = memoryBaselineMiB %v + config.cacheMaxBytes %v MiB + %s hash workers x %s KiB (the larger of config.argon2MemoryKiB and config.argon2ImportMaxMemoryKiB) + config.httpMaxArrivingBodyBytes %v MiB. Raise resources.limits.memory to %dMi or more, or lower the cache, the hash workers or the import range" $limit $limitMiB $needed .Values.memoryBaselineMiB (divf .Values.config.cacheMaxBytes 1048576) (include "auth-service.hashWorkers" .) (include "auth-service.hashWorkerMemoryKiB" .) (divf .Values.config.httpMaxArrivingBodyBytes 1048576) $needed) }}
{{- end }}
{{- end }}

{{- define "auth-service.checkReadinessWithinDrain" -}}
{{- $window := mul .Values.probes.readiness.periodSeconds .Values.probes.readiness.failureThreshold }}
{{- if gt (float64 $window) (float64 .Values.config.drainDelaySeconds) }}
{{- fail (printf "probes: readiness fails %d s after the drain starts (probes.readiness.periodSeconds %d x failureThreshold %d), after config.drainDelaySeconds %v: the pod would stop accepting while still in rotation. Shorten the probe or lengthen the drain" (int $window) (int .Values.probes.readiness.periodSeconds) (int .Values.probes.readiness.failureThreshold) .Values.config.drainDelaySeconds) }}
{{- end }}
{{- end }}

{{- define "auth-service.checkProduction" -}}
{{- if eq .Values.environment "production" }}
{{- if eq (include "auth-service.version" .) "latest" }}
{{- fail "image: the tag `latest` is refused in production; pin image.tag (and image.digest)" }}
{{- end }}
{{- if .Values.postgresql.enabled }}
{{- fail "postgresql.enabled is a single-instance database for development clusters; in production use database.external.existingSecret" }}
{{- end }}
{{- if .Values.liveCode.enabled }}
{{- fail "liveCode.enabled runs code synced into the pod by Tilt; it is for development only" }}
{{- end }}
{{- if lt (int .Values.config.argon2MemoryKiB) 19456 }}
{{- fail "config.argon2MemoryKiB: below the OWASP minimum (19456) the service refuses to start in production" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "auth-service.checkAlertsHaveTheirScrape" -}}
{{- if and .Values.metrics.prometheusRule.enabled (not .Values.metrics.serviceMonitor.enabled) }}
{{- fail "metrics.prometheusRule.enabled: the alerts select the series of the ServiceMonitor's job; without metrics.serviceMonitor.enabled they would match nothing and never fire" }}
{{- end }}
{{- end }}

{{- define "auth-service.checkTokenKeys" -}}
{{- if and .Values.tokenKeys.existingSecret (not .Values.tokenKeys.activeKid) }}
{{- fail "tokenKeys: with tokenKeys.existingSecret, set tokenKeys.activeKid to the key id (of that Secret's JSON map) that signs new tokens" }}
{{- end }}
{{- if and (eq .Values.config.tokenAlgorithm "EdDSA") (not .Values.tokenKeys.existingSecret) }}
{{- fail "tokenKeys: the chart generates HS256 secrets only; with config.tokenAlgorithm EdDSA, give the Ed25519 private keys (PEM) in tokenKeys.existingSecret" }}
{{- end }}
{{- end }}

{{- /* The settings as the service reads them (config.extra included): an empty import range stops it at start. */}}
{{- define "auth-service.checkImportRange" -}}
{{- $s := include "auth-service.settings" . | fromYaml }}
{{- range $bound := list (list "memory" "argon2_import_min_memory_kib" "argon2_import_max_memory_kib" "config.argon2ImportMinMemoryKiB" "config.argon2ImportMaxMemoryKiB") (list "time cost" "argon2_import_min_time_cost" "argon2_import_max_time_cost" "config.argon2ImportMinTimeCost" "config.argon2ImportMaxTimeCost") }}
{{- $min := index $s (index $bound 1) }}
{{- $max := index $s (index $bound 2) }}
{{- if gt (float64 $min) (float64 $max) }}
{{- fail (printf "imported hashes: the argon2 %s range is empty, %v (%s) above %v (%s); the service would refuse to start. Lower the minimum or raise the maximum (or the same setting in config.extra)" (index $bound 0) $min (index $bound 3) $max (index $bound 4)) }}
{{- end }}
{{- end }}
{{- end }}
