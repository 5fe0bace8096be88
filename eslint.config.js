// Lint rules that carry the architecture (docs/design.md, "Layers") as well as style.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const wireForbidden = [
  'net',
  'node:net',
  'fs',
  'node:fs',
  'fs/*',
  'node:fs/*',
  'worker_threads',
  'node:worker_threads',
  'tls',
  'node:tls',
  'dgram',
  'node:dgram',
  'child_process',
  'node:child_process',
];

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      // A promise nobody awaits swallows its failure: in a server that can mean a
      // check that silently did not happen. Every promise is awaited, returned or voided.
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test's test() and describe() return promises the runner itself awaits.
        {
          allowForKnownSafeCalls: [
            {
              from: 'package',
              package: 'node:test',
              name: ['test', 'describe', 'it', 'suite', 'before', 'after'],
            },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
    },
  },
  {
    // The wire layer is a pure codec: bytes in, messages out. It must never
    // touch sockets, files or threads, and imports nothing of ours above it.
    files: ['src/wire/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: wireForbidden,
              message: 'src/wire is pure: no sockets, files or threads (docs/design.md, Layers).',
            },
            {
              // Two exceptions: the coded base every error class extends
              // (src/util/coded-error.ts, which imports nothing), so the
              // wire's errors are coded like all others; and the lossless
              // name codec (src/util/byte-name.ts, pure), since XDR strings
              // are byte strings (docs/names.md).
              group: [
                '../*',
                '!../wire/*',
                '!../util',
                '../util/*',
                '!../util/coded-error.js',
                '!../util/byte-name.js',
              ],
              message:
                'src/wire imports nothing of ours outside src/wire (but util/coded-error.js and util/byte-name.js).',
            },
          ],
        },
      ],
    },
  },
  {
    // The name codec sits below the wire (which imports it): nothing of ours but the coded base.
    files: ['src/util/byte-name.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['./*', '!./coded-error.js', '../*'],
              message: 'util/byte-name.ts imports nothing of ours but util/coded-error.js.',
            },
          ],
        },
      ],
    },
  },
  {
    // The coded error base sits below every layer (the wire imports it): it imports nothing of ours.
    files: ['src/util/coded-error.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['./*', '../*'], message: 'util/coded-error.ts imports nothing of ours.' }] },
      ],
    },
  },
  {
    // The ring is the lowest layer: shared memory and Atomics, nothing of ours.
    files: ['src/ring/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['../*'],
              message: 'src/ring imports nothing of ours (docs/design.md, Layers).',
            },
          ],
        },
      ],
    },
  },
  {
    // History: the history thread, spool and credit. It knows the wire and the ring, not the services.
    files: ['src/history/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [
                '../services/*',
                '../server/*',
                '../backup/*',
                '../devices/*',
                '../dma/*',
                '../catalog/*',
                '../cli/*',
              ],
              message: 'src/history may import wire, ring and util only (docs/design.md, Layers).',
            },
          ],
        },
      ],
    },
  },
);
