import type { AuthService } from './auth.service.ts';
import type { ServiceContext } from './context.ts';
import type { FilesService } from './files.service.ts';
import type { LinksService } from './links.service.ts';
import type { TasksService } from './tasks.service.ts';
import type { UploadsService } from './uploads.service.ts';
import type { UsersService } from './users.service.ts';
import type { WebhooksService } from './webhooks.service.ts';
import type { OutboundPolicy } from '../net/address-policy.ts';

export interface Services {
  ctx: ServiceContext;
  users: UsersService;
  auth: AuthService;
  files: FilesService;
  uploads: UploadsService;
  links: LinksService;
  tasks: TasksService;
  policy: OutboundPolicy;
  /** Started only where the faces run (createApp), so each API node dispatches. */
  webhooks: WebhooksService;
}
