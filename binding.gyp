# The native addon of src/util/native-fs.ts (see native/posixfs.c, and native/batch.c for the backup's batched calls). `npm ci` and
# `npm install` build it: package.json's "install" script runs `node-gyp rebuild`.
{
  "targets": [
    {
      "target_name": "posixfs",
      "sources": ["native/posixfs.c", "native/batch.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    }
  ]
}
