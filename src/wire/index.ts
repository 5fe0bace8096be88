// The wire layer's public face: everything above imports from here.
export * from './constants.js';
export * from './errors.js';
export * from './xdr.js';
export * from './schema.js';
export * from './structures.js';
export * from './messages.js';
export * from './codec.js';
export * from './framing.js';
export * from './md5.js';
