# Turns a folder of .sql files into a C++ table, so the service carries its SQL:
# schema/*.sql (migrations, named by file name) and src/store/sql/*.sql (the
# store's statements, named by file name without .sql). Run with cmake -P and
#   -DSQL_DIR=folder -DOUT=file.cpp -DHEADER=store/x.hpp -DTYPE=Struct -DFUNCTION=name
#   [-DSTRIP_EXTENSION=ON]
# TYPE is a {name, sql} aggregate declared in HEADER; FUNCTION returns them all.
file(GLOB files ${SQL_DIR}/*.sql)
list(SORT files)
file(RELATIVE_PATH from ${CMAKE_CURRENT_LIST_DIR}/.. ${SQL_DIR})
set(body "// Generated from ${from}/*.sql by cmake/embed_sql.cmake. Do not edit.\n#include \"${HEADER}\"\nnamespace maestra::store {\nconst std::vector<${TYPE}>& ${FUNCTION}() {\n  static const std::vector<${TYPE}> all = {\n")
foreach(f ${files})
  if(STRIP_EXTENSION)
    get_filename_component(name ${f} NAME_WLE)
  else()
    get_filename_component(name ${f} NAME)
  endif()
  file(READ ${f} sql)
  string(APPEND body "    {\"${name}\", R\"maestra_sql(${sql})maestra_sql\"},\n")
endforeach()
string(APPEND body "  };\n  return all;\n}\n}  // namespace maestra::store\n")
file(WRITE ${OUT}.tmp "${body}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
