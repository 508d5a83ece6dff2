{{/*
Egress to the cluster DNS (kube-dns / CoreDNS pods), UDP and TCP (large answers fall back to TCP).
*/}}
{{- define "locust.dnsEgress" -}}
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
Egress to the service under test: its pods (target.podLabels, in target.namespace) on their port,
which is what a NetworkPolicy sees after the Service's translation; any address on that port without labels.
*/}}
{{- define "locust.targetEgress" -}}
- ports:
    - port: {{ .Values.target.port }}
      protocol: TCP
  {{- with .Values.target.podLabels }}
  to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ default $.Release.Namespace $.Values.target.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml . | nindent 10 }}
  {{- end }}
{{- end }}
