# first_error.cmake: cmake -DBUILD_DIR=... -DTARGET=... -DEXPECT=<regex> -P first_error.cmake
# Builds TARGET (which must fail) and checks EXPECT against the FIRST line of
# the compiler output that reports an error: the sentence a user reads first.
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${TARGET}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "${TARGET} compiled, but it must not")
endif()
string(REPLACE "\n" ";" lines "${out}${err}")
foreach(line IN LISTS lines)
  if(line MATCHES "error: ")
    if(line MATCHES "${EXPECT}")
      message(STATUS "first error line matches: ${line}")
      return()
    endif()
    message(FATAL_ERROR "first error line does not match '${EXPECT}':\n${line}")
  endif()
endforeach()
message(FATAL_ERROR "no error line in the output:\n${out}${err}")
