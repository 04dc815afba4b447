// Ferry runs webtorrent as a server-side BitTorrent client over TCP. WebRTC peers (browser
// clients) are not supported: @thaunknown/simple-peer imports these three classes, finds them
// undefined, reports no WebRTC support, and webtorrent never attempts a WebRTC connection.
// Standing in for webrtc-polyfill avoids node-datachannel, whose install downloads a native
// binary from GitHub.
export const RTCPeerConnection = undefined;
export const RTCSessionDescription = undefined;
export const RTCIceCandidate = undefined;
export default { RTCPeerConnection, RTCSessionDescription, RTCIceCandidate };
