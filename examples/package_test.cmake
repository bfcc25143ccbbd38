# ApiPackage test: install troupe into a scratch prefix, build the examples as a separate project
# with find_package(troupe), and run one to show it finds libtroupe_api.
#   cmake -DBUILD_DIR=... -DSOURCE_DIR=<examples> -DWORK_DIR=... -DGENERATOR=... -P package_test.cmake
function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "${what} failed (${code}):\n${out}\n${err}")
  endif()
  message(STATUS "${what}: ok")
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
run_step("install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
foreach(file include/troupe/api.hpp include/troupe/runtime/result.hpp lib/cmake/troupe/troupeConfig.cmake)
  if(NOT EXISTS ${WORK_DIR}/prefix/${file})
    message(FATAL_ERROR "the install lacks ${file}")
  endif()
endforeach()
run_step("configure the examples" ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -G ${GENERATOR}
         -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
run_step("build the examples" ${CMAKE_COMMAND} --build ${WORK_DIR}/build -j 1)
run_step("run an example" ${WORK_DIR}/build/two_stage_pipeline --help)
