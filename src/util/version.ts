// Who we are, as CONFIG_GET_SERVER_INFO and `--version` tell it.
import { createRequire } from 'node:module';

const pkg = createRequire(import.meta.url)('../../../package.json') as { version: string };

export const VERSION: string = pkg.version;
export const VENDOR_NAME = 'ndmpd project';
export const PRODUCT_NAME = 'ndmpd (NDMP server for Node.js)';
