// The control port, bound before ndmpd creates anything (state dir, auth file,
// library): a port in use is one line and exit 2 with nothing left behind
// (docs/operations.md, "Ports and firewall"). Until NdmpServer adopts the
// socket (ListenerOptions.bound), a DMA that connects is hung up on at once,
// as it would have been refused before the port was bound.

import net from 'node:net';

export function bindControlPort(host: string, port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.destroy();
    });
    const onError = (e: Error) => reject(e);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve(server);
    });
  });
}
