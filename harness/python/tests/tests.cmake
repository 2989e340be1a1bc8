# Python tests, run with the interpreter the module was built for. CPU tests (label cpu) need
# torch (Debian's python3-torch is enough; what needs a newer torch skips with the reason);
# GPU tests (label gpu) exit 77 without a CUDA device, which ctest lists as Skipped.
set(moba_py_env "PYTHONPATH=${CMAKE_CURRENT_BINARY_DIR};MOBA_EXAMPLES=${CMAKE_CURRENT_SOURCE_DIR}/examples")
add_test(NAME python_cpu COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/tests/test_cpu.py)
set_tests_properties(python_cpu PROPERTIES LABELS "cpu;quick" ENVIRONMENT "${moba_py_env}" SKIP_RETURN_CODE 77
                     WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
add_test(NAME python_gpu COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/tests/test_gpu.py)
set_tests_properties(python_gpu PROPERTIES LABELS "gpu;quick" ENVIRONMENT "${moba_py_env}" SKIP_RETURN_CODE 77
                     WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR} TIMEOUT 600)
# The test that reads device-wide free memory runs alone (SEMANTICS.md §6; test_gpu.py BenchMemory).
add_test(NAME python_gpu_alone COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/tests/test_gpu.py BenchMemory)
set_tests_properties(python_gpu_alone PROPERTIES LABELS "gpu;quick" ENVIRONMENT "${moba_py_env};MOBA_GPU_ALONE=1"
                     SKIP_RETURN_CODE 77 RUN_SERIAL TRUE WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR} TIMEOUT 300)
