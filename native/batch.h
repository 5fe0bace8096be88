/* The backup's batched directory listing and file reads (batch.c), registered
 * on the addon's exports by posixfs.c's module init. */
#ifndef NDMPD_BATCH_H
#define NDMPD_BATCH_H
#include <stdbool.h>
#include <node_api.h>
bool register_batch(napi_env env, napi_value exports);
#endif
