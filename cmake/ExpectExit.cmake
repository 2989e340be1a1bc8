# cmake -DCOMMAND=<program> -DEXPECT_RC=<n> -DEXPECT_OUTPUT=<regex> -P ExpectExit.cmake
# Runs COMMAND (a ;-list) and fails unless it exits EXPECT_RC and its output (stdout and
# stderr) matches EXPECT_OUTPUT: for exit statuses ctest's own properties cannot pin.
execute_process(COMMAND ${COMMAND} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL EXPECT_RC)
  message(FATAL_ERROR "${COMMAND}: exit status ${rc}, expected ${EXPECT_RC}\n${out}${err}")
endif()
if(DEFINED EXPECT_OUTPUT AND NOT "${out}${err}" MATCHES "${EXPECT_OUTPUT}")
  message(FATAL_ERROR "${COMMAND}: output does not match '${EXPECT_OUTPUT}'\n${out}${err}")
endif()
