{{/*
The headless master's command, `sh -c` around locust: locust runs as its child, so that after the run
the pod can keep its reports for `kubectl cp` and still exit with locust's code, the gates'. It writes
that code to exit-code in the reports' folder (the sign that the run is over), then waits
headless.keepResultsSeconds, or less: SIGTERM (`kubectl exec ... -- kill 1`) ends the wait at once.
SIGTERM during the run is passed on to locust, which stops and writes its reports; then no wait.
No `$(`: the kubelet would expand it as a variable reference.
*/}}
{{- define "locust.keepResultsScript" -}}
stopping=0
locust "$@" &
pid=$!
trap 'stopping=1; kill -TERM "$pid" 2>/dev/null' TERM INT
wait "$pid"; code=$?
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; code=$?; done
echo "$code" > {{ .Values.results.mountPath }}/exit-code
if [ "$stopping" = 0 ] && [ {{ .Values.headless.keepResultsSeconds }} -gt 0 ]; then
  echo "locust exited with $code; its reports stay in {{ .Values.results.mountPath }} for {{ .Values.headless.keepResultsSeconds }} s (kubectl cp), or until kill 1"
  trap 'exit "$code"' TERM INT
  sleep {{ .Values.headless.keepResultsSeconds }} &
  wait "$!"
fi
exit "$code"
{{- end }}
