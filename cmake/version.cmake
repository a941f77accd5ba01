# Writes the build's version source (run at every build, so the commit is never stale).
# Inputs: SRC (repository root), OUT (file to write), VERSION (the project version).
# configure_file leaves OUT untouched when nothing changed, so nothing is recompiled then.
set(commit "unknown")
find_package(Git QUIET)
if(GIT_FOUND AND EXISTS "${SRC}/.git")
  execute_process(COMMAND "${GIT_EXECUTABLE}" -C "${SRC}" rev-parse --short=12 HEAD
                  OUTPUT_VARIABLE head RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(rc EQUAL 0)
    set(commit "${head}")
    execute_process(COMMAND "${GIT_EXECUTABLE}" -C "${SRC}" status --porcelain --untracked-files=no
                    OUTPUT_VARIABLE dirty RESULT_VARIABLE rc ERROR_QUIET)
    if(rc EQUAL 0 AND NOT dirty STREQUAL "")
      set(commit "${commit}-dirty")
    endif()
  endif()
endif()
set(CKV_VERSION "${VERSION}")
set(CKV_GIT_COMMIT "${commit}")
configure_file("${SRC}/cmake/version.cpp.in" "${OUT}" @ONLY)
