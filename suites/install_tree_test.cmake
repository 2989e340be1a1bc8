# ctest install_tree (cmake -P): install the build into PREFIX, run the installed moba validate
# on REPORT, and require that it read the schema installed beside it; then configure, build and
# run CONSUMER (suites/consumer/) against the installed package with find_package(moba).
file(REMOVE_RECURSE ${PREFIX})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc}): ${out}${err}")
endif()
foreach(f bin/moba share/moba/moba-report.schema.json share/moba/FORMAT.md
          include/moba/harness/registry.hpp lib/cmake/moba/mobaConfig.cmake)
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

# A project of its own, with nothing from this build but the installed prefix.
set(consumer_build ${PREFIX}-consumer)
file(REMOVE_RECURSE ${consumer_build})
execute_process(COMMAND ${CMAKE_COMMAND} -S ${CONSUMER} -B ${consumer_build} -G Ninja
                        -DCMAKE_PREFIX_PATH=${PREFIX} -DCMAKE_BUILD_TYPE=Release
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the consumer against ${PREFIX} failed (${rc}): ${out}${err}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${consumer_build}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the consumer failed (${rc}): ${out}${err}")
endif()
execute_process(COMMAND ${consumer_build}/moba_consumer
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the consumer failed (${rc}): ${out}${err}")
endif()
message(STATUS "consumer: ${out}")
