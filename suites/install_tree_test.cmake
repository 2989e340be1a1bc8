# ctest install_tree (cmake -P): install the build into PREFIX, run the installed moba validate
# on REPORT, and require that it read the schema installed beside it.
file(REMOVE_RECURSE ${PREFIX})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc}): ${out}${err}")
endif()
foreach(f bin/moba share/moba/moba-report.schema.json share/moba/FORMAT.md)
  if(NOT EXISTS ${PREFIX}/${f})
    message(FATAL_ERROR "not installed: ${PREFIX}/${f}")
  endif()
endforeach()
execute_process(COMMAND ${PREFIX}/bin/moba validate ${REPORT}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "installed moba validate failed (${rc}): ${out}${err}")
endif()
string(FIND "${out}" "schema: ${PREFIX}/share/moba/moba-report.schema.json" at)
if(at EQUAL -1)
  message(FATAL_ERROR "installed moba validate did not read the installed schema:\n${out}")
endif()
message(STATUS "installed moba validate: ${out}")
