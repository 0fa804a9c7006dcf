# Turns api/openapi.json into a C++ string so the binary serves its own API document.
file(READ ${SOURCE} doc)
set(body "// Generated from api/openapi.json by cmake/embed_openapi.cmake. Do not edit.\nnamespace maestra::http {\nconst char* openapi_document() {\n  return R\"maestra_openapi(${doc})maestra_openapi\";\n}\n}  // namespace maestra::http\n")
file(WRITE ${OUT}.tmp "${body}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
