{{/*
A Pod that mounts the reports' claim, for `kubectl cp` once the run's pod is gone (NOTES.txt prints it).
Not part of the release: a ReadWriteOnce claim can be mounted by the pods of one node only, and the
run's pod holds it until it ends.
*/}}
{{- define "locust.resultsReaderPod" -}}
apiVersion: v1
kind: Pod
metadata:
  name: {{ include "locust.componentName" (list . "results-reader") }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "locust.componentLabels" (list . "results-reader") | nindent 4 }}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  activeDeadlineSeconds: 3600
  securityContext:
    {{- include "locust.podSecurityContext" . | nindent 4 }}
  containers:
    - name: reader
      image: {{ include "locust.image" . }}
      command:
        - sleep
        - "3600"
      securityContext:
        {{- include "locust.containerSecurityContext" . | nindent 8 }}
      resources:
        requests:
          cpu: 10m
          memory: 16Mi
        limits:
          cpu: 100m
          memory: 64Mi
      volumeMounts:
        - name: results
          mountPath: {{ .Values.results.mountPath }}
          readOnly: true
  volumes:
    - name: results
      persistentVolumeClaim:
        claimName: {{ include "locust.componentName" (list . "results") }}
        readOnly: true
{{- end }}
