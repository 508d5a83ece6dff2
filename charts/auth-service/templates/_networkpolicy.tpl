{{/*
Egress to the cluster DNS (kube-dns / CoreDNS pods), UDP and TCP (large answers fall back to TCP).
*/}}
{{- define "auth-service.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.dnsNamespace }}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/*
Egress to the database: the bundled one's pods, or the external one's port (at the given CIDRs, if any).
*/}}
{{- define "auth-service.databaseEgress" -}}
{{- if .Values.postgresql.enabled -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "auth-service.componentSelectorLabels" (list . "postgresql") | nindent 10 }}
  ports:
    - port: 5432
      protocol: TCP
{{- else -}}
- ports:
    - port: {{ .Values.database.external.port }}
      protocol: TCP
  {{- with .Values.networkPolicy.databaseCIDRs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  {{- end }}
{{- end }}
{{- end }}
