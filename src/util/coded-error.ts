// The one base of every error class in this code base: each carries a stable
// `code` (SCREAMING_SNAKE: the NDMP error's name where there is one, else the
// layer and what went wrong, e.g. TAPE_EOM), so logs, tests and callers can
// tell failures apart without matching message text. It lives at the bottom
// layer so that every layer, the pure wire codec included, can extend it.

export abstract class CodedError extends Error {
  abstract readonly code: string;
}
