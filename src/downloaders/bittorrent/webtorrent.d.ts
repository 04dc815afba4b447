// The part of webtorrent 3's API that Ferry uses (the package ships no types, and the
// DefinitelyTyped ones describe the 1.x API). Internal fields used on purpose are marked.

declare module 'webtorrent' {
  import { EventEmitter } from 'node:events';

  namespace WebTorrent {
    interface Options {
      torrentPort?: number;
      dhtPort?: number;
      dht?: boolean | Record<string, unknown>;
      tracker?: false | Record<string, unknown>;
      lsd?: boolean;
      utPex?: boolean;
      natUpnp?: boolean | 'permanent';
      natPmp?: boolean;
      webSeeds?: boolean;
      utp?: boolean;
      maxConns?: number;
      downloadLimit?: number;
      uploadLimit?: number;
      secure?: number;
      seedOutgoingConnections?: boolean;
    }

    interface ChunkStoreOptions {
      torrent: Torrent;
      path: string;
      files: Array<{ path: string; length: number; offset: number; name?: string }>;
      length: number;
      name: string;
      addUID?: boolean;
      max?: number;
    }

    interface TorrentOptions {
      announce?: string[];
      path?: string;
      store?: unknown;
      preloadedStore?: unknown;
      skipVerify?: boolean;
      deselect?: boolean;
      storeCacheSlots?: number;
      destroyStoreOnDestroy?: boolean;
      strategy?: 'sequential' | 'rarest';
      private?: boolean;
      uploads?: number | false;
      alwaysChokeSeeders?: boolean;
      noPeersIntervalTime?: number;
    }

    interface TorrentFile extends EventEmitter {
      readonly name: string;
      readonly path: string;
      readonly length: number;
      readonly offset: number;
      readonly downloaded: number;
      readonly progress: number;
      done: boolean;
      /** internal */
      readonly _startPiece: number;
      /** internal */
      readonly _endPiece: number;
      select(priority?: number): void;
      deselect(): void;
    }

    interface BitField {
      buffer: Uint8Array;
      get(index: number): boolean;
    }

    interface Wire {
      remoteAddress?: string;
      remotePort?: number;
    }

    interface Torrent extends EventEmitter {
      readonly infoHash: string;
      readonly name: string;
      readonly length: number;
      readonly pieceLength: number;
      readonly lastPieceLength: number;
      readonly files: TorrentFile[];
      readonly pieces: unknown[];
      readonly bitfield: BitField | undefined;
      readonly downloaded: number;
      readonly uploaded: number;
      readonly received: number;
      readonly downloadSpeed: number;
      readonly uploadSpeed: number;
      readonly numPeers: number;
      readonly wires: Wire[];
      readonly ready: boolean;
      readonly done: boolean;
      readonly destroyed: boolean;
      readonly metadata: Uint8Array | null;
      /** The raw, decoded info dictionary (after metadata). */
      readonly info?: Record<string, unknown>;
      select(start: number, end: number, priority?: number, notify?: () => void): void;
      deselect(start: number, end: number): void;
      addPeer(peer: string): boolean;
      destroy(opts?: { destroyStore?: boolean }, cb?: (err?: Error | null) => void): void;
    }

    interface Instance extends EventEmitter {
      readonly torrents: Torrent[];
      readonly torrentPort: number;
      readonly listening: boolean;
      readonly destroyed: boolean;
      /** An object with `contains(ip)`: peers it answers true for are never dialled. */
      blocked?: { contains(ip: string): boolean };
      add(
        torrentId: string | Buffer | Uint8Array,
        opts?: TorrentOptions,
        ontorrent?: (t: Torrent) => void,
      ): Torrent;
      remove(
        torrentId: string | Torrent,
        opts?: { destroyStore?: boolean },
        cb?: (err?: Error | null) => void,
      ): Promise<void>;
      destroy(cb?: (err?: Error | null) => void): void;
      address(): { address: string; family: string; port: number } | null;
      throttleDownload(rate: number): boolean | void;
      throttleUpload(rate: number): boolean | void;
    }
  }

  interface WebTorrentConstructor {
    new (opts?: WebTorrent.Options): WebTorrent.Instance;
    readonly UTP_SUPPORT: boolean;
    readonly WEBRTC_SUPPORT: boolean;
    readonly VERSION: string;
  }

  const WebTorrent: WebTorrentConstructor;
  export default WebTorrent;
}
