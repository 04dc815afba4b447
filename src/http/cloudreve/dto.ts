// Wire shapes of the Cloudreve face, built from rows. Field names and omitempty rules follow
// the seed and spec/cloudreve-v4.md.
import { encodeBoolset, GroupPermission, MY_FS_CAPABILITY, NodeCapability } from '../../domain/boolset.ts';
import { formatFileUri } from '../../domain/file-uri.ts';
import { primaryEntityId, type IdCodec } from '../../domain/ids.ts';
import type { Task } from '../../domain/task.ts';
import { isoTime } from '../../lib/clock.ts';
import type { FileRow } from '../../services/files.service.ts';
import type { Actor } from '../../services/users.service.ts';

export function userDto(actor: Actor, ids: IdCodec) {
  const permissions: number[] = [GroupPermission.archiveDownload];
  if (actor.group.is_admin) permissions.push(GroupPermission.admin, GroupPermission.selectNode);
  if (actor.group.allow_remote_download) permissions.push(GroupPermission.remoteDownload);
  return {
    id: ids.encode('user', actor.user.id),
    email: actor.user.email,
    nickname: actor.user.nickname,
    status: actor.user.status,
    created_at: isoTime(actor.user.created_at),
    group: {
      id: ids.encode('group', actor.group.id),
      name: actor.group.name,
      permission: encodeBoolset(permissions),
      direct_link_batch_size: 10,
      trash_retention: 0,
    },
    language: 'en-US',
  };
}

export function fileDto(file: FileRow, segments: readonly string[], ids: IdCodec) {
  const entity = primaryEntityId(file);
  return {
    type: file.type,
    id: ids.encode(file.type === 1 ? 'folder' : 'file', file.id),
    name: file.name,
    created_at: isoTime(file.created_at),
    updated_at: isoTime(file.updated_at),
    size: file.size,
    metadata: null,
    path: formatFileUri(segments),
    capability: MY_FS_CAPABILITY,
    owned: true,
    ...(entity === null ? {} : { primary_entity: ids.encode('entity', entity) }),
  };
}

export interface NodeRowLike {
  id: number;
  name: string;
  type: string;
  capabilities: string;
}

export function nodeDto(node: NodeRowLike, ids: IdCodec) {
  return {
    id: ids.encode('node', node.id),
    name: node.name,
    type: node.type,
    capabilities: node.capabilities,
  };
}

export const MASTER_CAPABILITIES = encodeBoolset([NodeCapability.remoteDownload]);

export function taskDto(task: Task, ids: IdCodec, node?: NodeRowLike) {
  const history = task.error_history;
  const download = task.download_status;
  const dto: Record<string, unknown> = {
    created_at: isoTime(task.created_at),
    updated_at: isoTime(task.updated_at),
    id: ids.encode('task', task.id),
    status: task.status,
    type: task.type,
    summary: {
      ...(task.phase ? { phase: task.phase } : {}),
      props: { download, dst: task.dst, failed: task.failed_files, src: task.src_file, src_str: task.src },
    },
  };
  if (task.error) dto.error = task.error;
  if (history.length) dto.error_history = history;
  if (task.started_at) dto.duration = Math.max(0, (task.ended_at ?? task.updated_at) - task.started_at);
  if (task.resume_time && task.status === 'suspending') dto.resume_time = Math.floor(task.resume_time / 1000);
  if (task.retry_count) dto.retry_count = task.retry_count;
  // Ferry extension: paused by the user (status suspending with no resume_time).
  if (task.status === 'suspending' && task.paused_at !== null) dto.paused = true;
  if (node) dto.node = nodeDto(node, ids);
  return dto;
}
