# Writes build_info.h at every build, so that the revision in --version and in every run's log
# header is the one built (a tree with uncommitted changes gets "-dirty"). configure_file only
# rewrites the header when its content changes, so an unchanged revision rebuilds nothing.
#   cmake -DSOURCE_DIR=... -DINPUT=... -DOUTPUT=... -DPROJECT_VERSION=... -DCOMPILER=... -P build_info.cmake
execute_process(COMMAND git rev-parse --short=12 HEAD
                WORKING_DIRECTORY ${SOURCE_DIR}
                OUTPUT_VARIABLE LF_GIT_HASH OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET
                RESULT_VARIABLE git_failed)
if(git_failed OR NOT LF_GIT_HASH)
  set(LF_GIT_HASH "unknown")
else()
  execute_process(COMMAND git diff --quiet HEAD --
                  WORKING_DIRECTORY ${SOURCE_DIR} RESULT_VARIABLE dirty ERROR_QUIET)
  if(dirty)
    set(LF_GIT_HASH "${LF_GIT_HASH}-dirty")
  endif()
endif()
set(CMAKE_C_COMPILER_ID_AND_VERSION "${COMPILER}")
configure_file(${INPUT} ${OUTPUT} @ONLY)
