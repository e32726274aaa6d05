# libissun: the C client library (included from the top-level CMakeLists.txt
# when src/client/*.c exist).
#
#   issun_shared  libissun.so.<ver>  exports only the ISSUN_API functions of
#                                    include/issun/*.h (-fvisibility=hidden)
#   issun_static  libissun.a         the same code plus the issun__* test hooks
#                                    (src/client/client_internal.h), which the
#                                    integration tests link
#
# Both are self-contained: they compile the client, wire codec and QUIC glue
# sources themselves, so an installed libissun needs only ngtcp2 and GnuTLS.
# Installed: headers, both libraries, libissun.pc, and a CMake package
# (find_package(issun) -> issun::issun, issun::issun_static).

include(CMakePackageConfigHelpers)

set(ISSUN_LIB_SRC ${ISSUN_CLIENT_SRC} ${ISSUN_PROTO_SRC} ${ISSUN_QUIC_SRC})
set(ISSUN_SOVERSION 0)

foreach(kind shared static)
  if(kind STREQUAL "shared")
    add_library(issun_${kind} SHARED ${ISSUN_LIB_SRC})
    set_target_properties(issun_${kind} PROPERTIES
      VERSION ${PROJECT_VERSION} SOVERSION ${ISSUN_SOVERSION} EXPORT_NAME issun)
    target_link_libraries(issun_${kind} PRIVATE
      PkgConfig::NGTCP2_CRYPTO PkgConfig::NGTCP2 PkgConfig::GNUTLS)
    if(NOT ISSUN_SANITIZE)
      target_link_options(issun_${kind} PRIVATE -Wl,--no-undefined)
    endif()
  else()
    add_library(issun_${kind} STATIC ${ISSUN_LIB_SRC})
    set_target_properties(issun_${kind} PROPERTIES EXPORT_NAME issun_static)
    target_link_libraries(issun_${kind} PUBLIC
      PkgConfig::NGTCP2_CRYPTO PkgConfig::NGTCP2 PkgConfig::GNUTLS)
  endif()
  set_target_properties(issun_${kind} PROPERTIES
    OUTPUT_NAME issun C_VISIBILITY_PRESET hidden POSITION_INDEPENDENT_CODE ON)
  target_include_directories(issun_${kind}
    PUBLIC
      $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${PROJECT_SOURCE_DIR}/src)
  # The static library's users in this tree (integration tests) include
  # client/client_internal.h for the test hooks.
  if(kind STREQUAL "static")
    target_include_directories(issun_${kind} PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/src>)
  endif()
endforeach()

add_library(issun::issun ALIAS issun_shared)
add_library(issun::issun_static ALIAS issun_static)

# The example programs of the client guide, built against the public header.
if(EXISTS ${PROJECT_SOURCE_DIR}/examples/hello/hello.c)
  add_executable(issun-hello ${PROJECT_SOURCE_DIR}/examples/hello/hello.c)
  target_link_libraries(issun-hello PRIVATE issun_shared)
endif()

# ---- install ------------------------------------------------------------
set(ISSUN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/issun)

install(TARGETS issun_shared issun_static EXPORT issunTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/issun
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
install(EXPORT issunTargets NAMESPACE issun:: DESTINATION ${ISSUN_CMAKE_DIR}
  FILE issunTargets.cmake)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/issunConfig.cmake.in
  ${PROJECT_BINARY_DIR}/issunConfig.cmake INSTALL_DESTINATION ${ISSUN_CMAKE_DIR})
# 0.x: a new minor version may break the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/issunConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/issunConfig.cmake ${PROJECT_BINARY_DIR}/issunConfigVersion.cmake
  DESTINATION ${ISSUN_CMAKE_DIR})

# libissun.pc, relocatable: the prefix is found from the .pc file's own
# directory, so `cmake --install --prefix <anywhere>` gives a working file.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(ISSUN_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(ISSUN_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  file(RELATIVE_PATH ISSUN_PC_UP "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
  string(REGEX REPLACE "/$" "" ISSUN_PC_UP "${ISSUN_PC_UP}")
  set(ISSUN_PC_PREFIX "\${pcfiledir}/${ISSUN_PC_UP}")
  set(ISSUN_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(ISSUN_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(ISSUN_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/libissun.pc.in ${PROJECT_BINARY_DIR}/libissun.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/libissun.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
