# qllm_component(NAME SOURCES_DIR DEPS...)
# One static library per engine folder, sources globbed so adding a file needs
# no CMake edit. Headers are included as "engine/<folder>/<file>.h".
function(qllm_component name dir)
  file(GLOB _srcs CONFIGURE_DEPENDS "${dir}/*.cpp" "${dir}/*.cu")
  if(NOT _srcs)  # a folder with headers only
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${CMAKE_SOURCE_DIR})
    target_link_libraries(${name} INTERFACE ${ARGN})
    return()
  endif()
  add_library(${name} STATIC ${_srcs})
  target_include_directories(${name} PUBLIC ${CMAKE_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARGN} PRIVATE qllm_warnings)
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
