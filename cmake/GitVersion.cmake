# Records the git commit and dirty flag at build time (not only at configure time), so a
# report always names the source it was built from. Produces target moba_git_version.
set(MOBA_GIT_VERSION_CPP ${CMAKE_BINARY_DIR}/generated/git_version.cpp)
add_custom_target(moba_git_version_gen
  COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${CMAKE_SOURCE_DIR} -DOUTPUT=${MOBA_GIT_VERSION_CPP}
          -DPROJECT_VERSION=${PROJECT_VERSION} -P ${CMAKE_SOURCE_DIR}/cmake/WriteGitVersion.cmake
  BYPRODUCTS ${MOBA_GIT_VERSION_CPP}
  COMMENT "Recording git commit")
add_library(moba_git_version STATIC ${MOBA_GIT_VERSION_CPP})
add_dependencies(moba_git_version moba_git_version_gen)
target_include_directories(moba_git_version PUBLIC $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}>)
