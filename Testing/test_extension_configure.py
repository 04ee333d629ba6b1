"""The extension's CMake project configures against a stub Slicer that records what the real Slicer
macros would copy and install: every Python file of both packages, the bundled models and every
module folder, and nothing that does not exist. (Split from ``test_static_slicer.py``, whose CMake
and module-folder readers it uses.)"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from test_static_slicer import REPO, module_folders, python_files

STUB_SLICER_CONFIG = """
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
"""
# Records what the real Slicer macros would copy and install, and fails on files that do not exist.
STUB_USE_SLICER = """
set(BUILD_TESTING ON)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.10/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR ${Slicer_QTSCRIPTEDMODULES_LIB_DIR})
function(_stub_record kind files)
  foreach(file ${files})
    if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${file})
      message(FATAL_ERROR "${kind} ${file} does not exist")
    endif()
    file(APPEND ${STUB_RECORD} "${kind} ${file}\\n")
  endforeach()
endfunction()
function(ctkMacroCompilePythonScript)
  cmake_parse_arguments(ARG "NO_INSTALL_SUBDIR" "TARGET_NAME;DESTINATION_DIR;INSTALL_DIR" "SCRIPTS;RESOURCES" ${ARGN})
  _stub_record(script "${ARG_SCRIPTS}")
  _stub_record(resource "${ARG_RESOURCES}")
  file(APPEND ${STUB_RECORD} "install ${ARG_INSTALL_DIR}\\n")
endfunction()
function(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(ARG "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  _stub_record(module-script "${ARG_SCRIPTS}")
  _stub_record(module-resource "${ARG_RESOURCES}")
  file(APPEND ${STUB_RECORD} "module ${ARG_NAME}\\n")
endfunction()
function(slicer_add_python_unittest)
endfunction()
function(slicer_add_python_test)
endfunction()
"""


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_configures_against_a_stub_slicer(tmp_path):
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(STUB_SLICER_CONFIG)
    (stub / "UseSlicer.cmake").write_text(STUB_USE_SLICER)
    (stub / "Empty.cmake").write_text("")
    record = tmp_path / "record.txt"
    record.write_text("")
    result = subprocess.run(
        ["cmake", "-S", str(REPO), "-B", str(tmp_path / "build"), f"-DSlicer_DIR={stub}", f"-DSTUB_RECORD={record}"],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    entries = [line.split(" ", 1) for line in record.read_text().splitlines()]
    recorded = {kind: {value for k, value in entries if k == kind} for kind in {k for k, _ in entries}}
    expected_scripts = {p.relative_to(REPO).as_posix() for pkg in ("spinebrain", "spinebrain_slicer")
                        for p in python_files(REPO / pkg)}
    assert recorded["script"] == expected_scripts
    models = {p.relative_to(REPO).as_posix() for p in (REPO / "Resources" / "Models").rglob("*")
              if p.is_file() and p.name != ".gitkeep" and "__pycache__" not in p.parts}
    assert recorded.get("resource", set()) == {"spinebrain/py.typed"} | models
    assert recorded["install"] == {"lib/Slicer-5.10/qt-scripted-modules"}
    assert recorded.get("module", set()) == set(module_folders(REPO))
