# `cmake --install <build> --prefix P` lays out:
#   P/bin/moba                           the tool (harness/cli/CMakeLists.txt)
#   P/share/moba/                        the report schema and FORMAT.md, which `moba validate`
#                                        finds beside the tool (validate_command.cpp, schema_path)
#   P/share/moba/dashboard/              the page `moba dashboard` writes out, with vendored Vega
#   P/include/moba/{core,reference,kernels,harness}/...   the headers, by their source paths
#   P/lib/libmoba_*.a                    the libraries
#   P/lib/cmake/moba/                    the package: find_package(moba) gives moba::harness (the
#                                        registry, checks, timer, reports: everything), and the
#                                        parts below it (moba::reference, moba::kernels_wgmma, ...)
# suites/install_tree_test.cmake installs into a scratch prefix and builds suites/consumer/ against it.
include(CMakePackageConfigHelpers)

install(FILES reports/moba-report.schema.json reports/FORMAT.md DESTINATION ${CMAKE_INSTALL_DATADIR}/moba)
# The page `moba dashboard` copies into its output (dashboard_command.cpp, dashboard_assets_path).
install(DIRECTORY harness/dashboard/assets/ DESTINATION ${CMAKE_INSTALL_DATADIR}/moba/dashboard)

# Every library a consumer links, and every target in their link interfaces (a static library
# carries its private dependencies too: moba_warnings and moba_git_version add no flags or
# include paths outside this build, but must be exported to be named).
set(moba_exported
  moba_warnings moba_git_version moba_outcome moba_core moba_reference moba_reference_gpu
  moba_kernels_naive moba_kernels_decode moba_kernels_dense_cublas moba_kernels_moba moba_kernels_tiled_mma
  moba_kernels_wgmma moba_harness moba_report_tools)
foreach(target IN LISTS moba_exported)
  string(REGEX REPLACE "^moba_" "" exported_name ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${exported_name})
endforeach()
install(TARGETS ${moba_exported} EXPORT mobaTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/moba)

# Headers by role; tools/ and cli/ hold programs, not library interfaces.
foreach(dir core reference kernels harness)
  install(DIRECTORY ${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/moba/${dir}
    FILES_MATCHING PATTERN "*.hpp" PATTERN "*.cuh" PATTERN "*.md"
    PATTERN "tools" EXCLUDE PATTERN "cli" EXCLUDE PATTERN "python" EXCLUDE PATTERN "dashboard" EXCLUDE)
endforeach()

set(moba_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/moba)
install(EXPORT mobaTargets NAMESPACE moba:: DESTINATION ${moba_cmake_dir})
configure_package_config_file(cmake/mobaConfig.cmake.in ${CMAKE_BINARY_DIR}/mobaConfig.cmake
  INSTALL_DESTINATION ${moba_cmake_dir} PATH_VARS CMAKE_INSTALL_DATADIR)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/mobaConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/mobaConfig.cmake ${CMAKE_BINARY_DIR}/mobaConfigVersion.cmake
  DESTINATION ${moba_cmake_dir})
