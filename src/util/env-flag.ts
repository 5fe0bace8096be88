// Yes/no environment variables of NDMP operations (DIRECT, RECURSIVE, UPDATE ...).

/** True for y/yes/t/true/1, false for n/no/f/false/0 (any case, spaces ignored), null for anything else or absent. */
export function envFlag(value: string | undefined): boolean | null {
  if (value === undefined) return null;
  const v = value.trim().toLowerCase();
  if (['y', 'yes', 't', 'true', '1'].includes(v)) return true;
  if (['n', 'no', 'f', 'false', '0'].includes(v)) return false;
  return null;
}
