# Turns a folder of .sql files into a C++ table, so the service carries its SQL:
# schema/*.sql (migrations, named by file name) and src/store/sql/*.sql (the
# store's statements, named by file name without .sql). Run with cmake -P and
#   -DSQL_DIR=folder -DOUT=file.cpp -DHEADER=store/x.hpp -DTYPE=Struct -DFUNCTION=name
#   [-DSTRIP_EXTENSION=ON]
# TYPE is a {name, sql} aggregate declared in HEADER; FUNCTION returns them all.
#
# A file named NAME.fragment.sql is not a statement: its text (comment lines
# dropped) replaces every {{NAME}} in the others, so a column list that many
# statements return is written once (src/store/sql/command_columns.fragment.sql).
file(GLOB files ${SQL_DIR}/*.sql)
list(SORT files)
set(fragment_names "")
foreach(f ${files})
  get_filename_component(fname ${f} NAME)
  if(fname MATCHES "^(.+)\\.fragment\\.sql$")
    set(fragment_name ${CMAKE_MATCH_1})
    file(STRINGS ${f} fragment_lines)
    list(FILTER fragment_lines EXCLUDE REGEX "^--")
    string(JOIN "\n" fragment_text ${fragment_lines})
    set(fragment_${fragment_name} "${fragment_text}")
    list(APPEND fragment_names ${fragment_name})
    list(REMOVE_ITEM files ${f})
  endif()
endforeach()
file(RELATIVE_PATH from ${CMAKE_CURRENT_LIST_DIR}/.. ${SQL_DIR})
set(body "// Generated from ${from}/*.sql by cmake/embed_sql.cmake. Do not edit.\n#include \"${HEADER}\"\nnamespace maestra::store {\nconst std::vector<${TYPE}>& ${FUNCTION}() {\n  static const std::vector<${TYPE}> all = {\n")
foreach(f ${files})
  if(STRIP_EXTENSION)
    get_filename_component(name ${f} NAME_WLE)
  else()
    get_filename_component(name ${f} NAME)
  endif()
  file(READ ${f} sql)
  foreach(fragment_name ${fragment_names})
    string(REPLACE "{{${fragment_name}}}" "${fragment_${fragment_name}}" sql "${sql}")
  endforeach()
  if(sql MATCHES "{{[a-z_]+}}")
    message(FATAL_ERROR "${f}: ${CMAKE_MATCH_0} names no ${SQL_DIR}/*.fragment.sql")
  endif()
  string(APPEND body "    {\"${name}\", R\"maestra_sql(${sql})maestra_sql\"},\n")
endforeach()
string(APPEND body "  };\n  return all;\n}\n}  // namespace maestra::store\n")
file(WRITE ${OUT}.tmp "${body}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
