# `cmake --install build [--prefix P]` (or `make install PREFIX=P`):
#   bin/ckv, lib/libckv.a + libckv_server.a, include/ckv/*.h,
#   lib/cmake/ContiguousKV/ (find_package(ContiguousKV) gives ckv::ckv and ckv::ckv_server),
#   share/contiguouskv/{models,data,bench}: the bundled model, the texts and the plot scripts,
#   which the installed ckv finds relative to its own binary.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(CKV_SHARE_DIR ${CMAKE_INSTALL_DATADIR}/contiguouskv)

install(TARGETS ckv_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS ckv ckv_server EXPORT ContiguousKVTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY include/ckv DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY models/ DESTINATION ${CKV_SHARE_DIR}/models)
install(DIRECTORY data/ DESTINATION ${CKV_SHARE_DIR}/data)
install(PROGRAMS bench/plot_reprefill.py bench/plot_serve.py bench/serve_table.py bench/summary_table.py bench/quality_pairs.py
        DESTINATION ${CKV_SHARE_DIR}/bench)
install(FILES bench/reprefill_rows.py DESTINATION ${CKV_SHARE_DIR}/bench)

install(EXPORT ContiguousKVTargets NAMESPACE ckv::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ContiguousKV)
configure_package_config_file(cmake/ContiguousKVConfig.cmake.in
  ${CMAKE_BINARY_DIR}/ContiguousKVConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ContiguousKV)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/ContiguousKVConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/ContiguousKVConfig.cmake
              ${CMAKE_BINARY_DIR}/ContiguousKVConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ContiguousKV)
