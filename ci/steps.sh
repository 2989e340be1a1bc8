# Sourced by the GPU scripts: one way to run a named step with a time limit and keep its log.
#   step NAME SECONDS COMMAND...
# runs COMMAND under `timeout SECONDS`, writes its output to $step_logs/NAME.log, appends
# "NAME: exit RC (T s)" to $out/summary.txt (and prints it), sets step_status=1 on failure and
# returns COMMAND's exit status. Callers set $out first. Logs go to $out unless the caller sets
# step_logs to another folder: the device tool returns only a few files from $out, so scripts
# with many steps keep their logs aside and call step_gather at the end, which appends them all
# to $out/log.txt.
# A step run in a background subshell, `(step ...) &`, cannot set its parent's step_status: every
# failure is also written to $step_logs/.failed, which exit_steps reads, so a script's exit code
# counts the steps it ran beside each other too.
step_status=0
step_logs=${step_logs:-$out}
rm -f "$step_logs/.failed"
step() {
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$step_logs/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc ($((SECONDS - t0)) s)" | tee -a "$out/summary.txt"
  ((rc == 0)) || { step_status=1; printf '%s\n' "$name" >>"$step_logs/.failed"; }
  printf '%s\n' "$name" >>"$step_logs/.order"
  return $rc
}
step_gather() {
  [[ $step_logs == "$out" ]] && return 0
  local name
  while read -r name; do
    { echo "=== $name"; cat "$step_logs/$name.log"; } >>"$out/log.txt"
  done <"$step_logs/.order"
}
# The script's exit: 1 when any step failed, in this shell or in a background one.
exit_steps() {
  [[ -s $step_logs/.failed ]] && step_status=1
  exit $step_status
}
