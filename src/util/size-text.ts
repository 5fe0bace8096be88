// Sizes for people in log lines and messages: "4.0 GiB", "64.0 KiB", "512 bytes".

/** `n` bytes in the largest binary unit that keeps it at 1 or more, one decimal. */
export function sizeText(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${n.toFixed(1)} ${units[i]}`;
}
