// Admin (read-only): the download nodes. Managing users and groups needs admin endpoints that the
// server does not have yet; until then the `ferry user …` commands do it on the server.
import { useEffect, useState } from 'react';
import { api, hasPermission, type NodeInfo } from '../api.ts';

const NODE_CAPABILITY_REMOTE_DOWNLOAD = 3;

export function Admin() {
  const [nodes, setNodes] = useState<NodeInfo[] | null>(null);
  const [error, setError] = useState('');
  useEffect(() => {
    api<NodeInfo[]>('GET', '/user/setting/nodes')
      .then(setNodes)
      .catch((e: Error) => setError(e.message));
  }, []);
  return (
    <section className="page narrow">
      <h1>Admin</h1>
      <div className="card stack">
        <h2>Nodes</h2>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        {nodes === null && !error && <p className="muted">Loading…</p>}
        {nodes && (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Type</th>
                  <th scope="col">Remote download</th>
                  <th scope="col">Id</th>
                </tr>
              </thead>
              <tbody>
                {nodes.map((n) => (
                  <tr key={n.id}>
                    <td>{n.name}</td>
                    <td>{n.type}</td>
                    <td>{hasPermission(n.capabilities, NODE_CAPABILITY_REMOTE_DOWNLOAD) ? 'yes' : 'no'}</td>
                    <td>
                      <code>{n.id}</code>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </div>
      <div className="card stack">
        <h2>Users and groups</h2>
        <p className="muted">
          Not manageable from the web app yet: the server has no admin API for them. On the server, use{' '}
          <code>ferry user add|list|passwd|remove</code>.
        </p>
      </div>
    </section>
  );
}
